"""`vmbuild run`: a recipe in, a tested image (and its distribution) out.

The build reads as its stage list (`stages_for`): prepare, launch, build, sanitize,
snapshot, test, output, distribute. `BuildContext` carries what one stage hands the
next. A build folder `WORKDIR/<name>-<version>-<build id>/` receives the image, the
manifest, SHA256SUMS and logs; temporary files live in its `.tmp/` and are removed
whatever happens. A failed build keeps only its logs and a manifest saying it failed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from vmbuild import __version__, events
from vmbuild.config import Recipe
from vmbuild.errors import VmbuildError
from vmbuild.fsutil import write_json
from vmbuild.pipeline import Stage, run_stages


class OnError(StrEnum):
    CLEANUP = "cleanup"
    KEEP = "keep"


@dataclass(frozen=True)
class BuildOptions:
    """Choices made on the command line rather than in the recipe."""

    accelerator: str | None = None  # overrides recipe.vm.accelerator
    on_error: OnError = OnError.CLEANUP
    test: bool = True
    distribute: bool = True
    warm: bool = True
    workdir: Path | None = None  # overrides recipe.workdir
    mirror: str | None = None  # for bootstrapped parents


@dataclass
class BuildContext:
    """State handed from stage to stage during one build."""

    recipe: Recipe
    options: BuildOptions
    build_id: str
    build_dir: Path
    started: float = field(default_factory=time.time)
    error: BaseException | None = None
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # what the manifest records
    # Filled in by stages:
    parent: Any = None  # vmbuild.parent.ResolvedParent
    bundle: Any = None  # vmbuild.components.Bundle
    agent: Path | None = None
    accel: Any = None  # vmbuild.vm.accel.Accelerator
    build_key: Any = None  # vmbuild.keys.KeyPair shared by the build and test VMs
    overlay: Path | None = None  # the build disk; once the build VM is off, image.qcow2's
    # bytes, which the test VM boots (an overlay of) while they are written
    machine: Any = None  # the running build VM (vmbuild.vm.machine.Machine)
    session: Any = None  # its SSH session
    image: Path | None = None  # image.qcow2, once it is complete
    image_job: Any = None  # vmbuild.stages.snapshot.ImageJob while it writes image.qcow2
    outputs: list[dict[str, Any]] = field(default_factory=list)
    # Work a stage left running in the background (the test VM's teardown) that must
    # finish before the build is complete.
    pending: list[Future[Any]] = field(default_factory=list)

    @property
    def tmp(self) -> Path:
        return self.build_dir / ".tmp"

    @property
    def logs(self) -> Path:
        return self.build_dir / "logs"

    @property
    def tests_image(self) -> bool:
        """Whether a test VM boots the new image."""
        return bool(self.options.test and self.recipe.test.enabled)

    @property
    def keep_on_error(self) -> bool:
        return self.options.on_error is OnError.KEEP

    def parent_overlay(self, path: Path) -> Path:
        """A fresh qcow2 overlay of the parent at `path`, grown to `vm.disk_size` if set."""
        from vmbuild import disk

        assert self.parent is not None
        path.unlink(missing_ok=True)
        disk.overlay(self.parent.path, path)
        if self.recipe.vm.disk_size:
            disk.resize(path, self.recipe.vm.disk_size)
        return path

    def join_pending(self) -> None:
        """Wait for the background work stages left running; raise the first failure."""
        while self.pending:
            self.pending.pop(0).result()

    def timeouts(self) -> dict[str, int]:
        scale = self.accel.scale(1.0) if self.accel is not None else 1.0
        return self.recipe.timeouts.resolved(scale)


def new_build_id() -> str:
    """Sortable and unique: UTC time plus 4 random hex digits."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(2)}"


def stages_for(ctx: BuildContext) -> list[Stage]:
    """The build as a recipe of stages."""
    from vmbuild.stages import build, output, prepare, sanitize, snapshot, test

    stages: list[Stage] = [
        prepare.Prepare(),
        build.LaunchBuildVM(),
        build.RunPhases(),
        sanitize.Sanitize(),
        snapshot.Snapshot(),
    ]
    if ctx.tests_image:
        stages.append(test.TestImage())
    stages.append(output.Output())
    if ctx.options.distribute and ctx.recipe.distribute:
        stages.append(output.Distribute())
    return stages


def _manifest(ctx: BuildContext, status: str) -> dict[str, Any]:
    recipe = ctx.recipe
    data: dict[str, Any] = {
        "name": recipe.name,
        "version": recipe.version,
        "build_id": ctx.build_id,
        "status": status,
        "started": dt.datetime.fromtimestamp(ctx.started, dt.UTC).isoformat(),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
        "recipe": recipe.to_dict(),
        "recipe_file": str(recipe.path) if recipe.path else None,
        "stage_seconds": dict(ctx.timings),
        "vmbuild_version": __version__,
        "outputs": ctx.outputs,
        "distributions": [],
        **ctx.facts,
    }
    if ctx.parent is not None:
        data["parent"] = {
            "path": str(ctx.parent.path),
            "sha256": ctx.parent.sha256,
            **ctx.parent.source,
        }
    if ctx.bundle is not None:
        data["components"] = ctx.bundle.manifest()
    if ctx.error is not None:
        data["error"] = str(ctx.error) or type(ctx.error).__name__
    return data


def _discard_failed(ctx: BuildContext) -> None:
    """After a failure keep logs and manifest; remove every image and output."""
    for path in (ctx.build_dir / "image.qcow2", ctx.build_dir / "SHA256SUMS"):
        path.unlink(missing_ok=True)
    shutil.rmtree(ctx.build_dir / "outputs", ignore_errors=True)
    for part in ctx.build_dir.glob(".*.part"):
        part.unlink(missing_ok=True)


def kept_domains(ctx: BuildContext) -> list[str]:
    """This build's VMs still running after a failure (`--on-error keep`)."""
    from vmbuild.vm.machine import leftover_domains

    return [d for d in leftover_domains(ctx.recipe.vm.uri) if ctx.build_id in d]


def _remove_tmp(ctx: BuildContext) -> None:
    """Remove `.tmp` unless a kept VM still runs on its overlay and keys."""
    if ctx.error is not None and ctx.keep_on_error:
        kept = kept_domains(ctx)
        if kept:
            ctx.facts["kept_vms"] = kept
            events.warn(
                f"kept {', '.join(kept)} and its files in {ctx.tmp}; when done: "
                f"virsh -c {ctx.recipe.vm.uri} destroy {kept[0]} && rm -rf {ctx.tmp}"
            )
            return
    shutil.rmtree(ctx.tmp, ignore_errors=True)


def run_build(recipe: Recipe, options: BuildOptions | None = None) -> BuildContext:
    """Run every stage for `recipe`; returns the context (build folder, timings, outputs).

    Raises the stage's error (VmbuildError, KeyboardInterrupt) after cleanup.
    """
    options = options or BuildOptions()
    workdir = (options.workdir or recipe.workdir).resolve()
    build_id = new_build_id()
    build_dir = workdir / f"{recipe.name}-{recipe.version}-{build_id}"
    build_dir.mkdir(parents=True)
    ctx = BuildContext(recipe=recipe, options=options, build_id=build_id, build_dir=build_dir)
    ctx.tmp.mkdir()
    ctx.logs.mkdir()
    try:
        with contextlib.ExitStack() as stack:
            event_log = stack.enter_context(open(ctx.logs / "events.jsonl", "w"))
            stack.callback(events.subscribe(events.JsonLines(event_log)))
            stack.callback(_remove_tmp, ctx)
            events.info(
                f"build {build_id}: {build_dir}", build_id=build_id, build_dir=str(build_dir)
            )
            run_stages(stages_for(ctx), ctx, timings=ctx.timings)
    except BaseException as exc:
        ctx.error = ctx.error or exc
        if ctx.facts.get("complete"):  # built and tested; only distribution failed
            ctx.facts["distribution_error"] = str(exc)
            write_manifest(ctx, "success")
        else:
            _discard_failed(ctx)
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            write_manifest(ctx, status)
        if isinstance(exc, VmbuildError) and not exc.hint:
            exc.hint = f"build folder: {build_dir} (logs in logs/)"
        raise
    write_manifest(ctx)
    events.result(f"image: {ctx.image}", build_dir=str(build_dir), image=str(ctx.image))
    return ctx


def write_manifest(ctx: BuildContext, status: str = "success") -> Path:
    """Write BUILD_DIR/manifest.json atomically, keeping distributions recorded in it."""
    path = ctx.build_dir / "manifest.json"
    data = _manifest(ctx, status)
    with contextlib.suppress(FileNotFoundError, ValueError):
        data["distributions"] = json.loads(path.read_text()).get("distributions", [])
    write_json(path, data)
    return path


def host_versions() -> dict[str, str]:
    """Versions of the host tools that shaped the image (for the manifest and cache keys)."""
    from vmbuild.proc import run

    versions = {"vmbuild": __version__}
    with contextlib.suppress(VmbuildError):
        first = run(["qemu-system-x86_64", "--version"]).stdout.splitlines()[0]
        versions["qemu"] = first.split("version", 1)[-1].strip().split()[0]
    with contextlib.suppress(Exception):
        import libvirt

        lib = libvirt.getVersion()
        versions["libvirt"] = f"{lib // 1000000}.{lib // 1000 % 1000}.{lib % 1000}"
    versions["kernel"] = os.uname().release
    return versions
