"""Prepare: resolve the parent image, choose the accelerator, stage the components and
make the build's qcow2 overlay (the parent is never written)."""

from __future__ import annotations

from vmbuild import events, parent
from vmbuild.build import BuildContext, host_versions
from vmbuild.components import agent_path, stage
from vmbuild.keys import generate_keypair
from vmbuild.pipeline import BaseStage
from vmbuild.vm import accel


class Prepare(BaseStage):
    name = "prepare"
    title = "Preparing parent image, components and overlay"

    def run(self, ctx: BuildContext) -> None:
        recipe = ctx.recipe
        p = recipe.parent
        ctx.parent = parent.resolve(
            path=p.path, url=p.url, sha256=p.sha256, bootstrap=p.bootstrap, build=p.build,
            mirror=ctx.options.mirror,
        )  # fmt: skip
        events.info(f"parent: {ctx.parent.path} (sha256 {ctx.parent.sha256[:16]}...)")
        ctx.accel = accel.select(ctx.options.accelerator or recipe.vm.accelerator.value)
        ctx.facts["accelerator"] = accel.describe(ctx.accel)
        ctx.facts["host"] = host_versions()
        ctx.agent = agent_path()
        ctx.bundle = stage(recipe.components, ctx.tmp / "bundle")
        ctx.build_key = generate_keypair(ctx.tmp / "build_key", comment=f"vmbuild-{ctx.build_id}")
        ctx.overlay = ctx.parent_overlay(ctx.tmp / "build.qcow2")
