"""Output: the requested formats, SHA256SUMS and the manifest; then distribution."""

from __future__ import annotations

from pathlib import Path

from vmbuild import formats
from vmbuild.build import BuildContext, write_manifest
from vmbuild.distribute import distribute
from vmbuild.fsutil import atomic_open
from vmbuild.pipeline import BaseStage
from vmbuild.stages.snapshot import finish_image


def write_sums(build_dir: Path, entries: list[tuple[str, str]]) -> Path:
    """SHA256SUMS in sha256sum's format (paths relative to the build folder)."""
    path = build_dir / "SHA256SUMS"
    with atomic_open(path) as fh:
        for digest, name in entries:
            fh.write(f"{digest}  {name}\n")
    return path


class Output(BaseStage):
    name = "output"
    title = "Writing output formats, checksums and manifest"

    def run(self, ctx: BuildContext) -> None:
        finish_image(ctx)
        assert ctx.image is not None
        image = ctx.facts["image"]
        wanted = ctx.recipe.output.get("formats")
        if wanted:
            basename = f"{ctx.recipe.name}-{ctx.recipe.version}"
            produced = formats.produce(
                ctx.image, ctx.build_dir / "outputs", basename, wanted,
                threads=ctx.recipe.output.get("threads"), image_sha256=image["sha256"],
            )  # fmt: skip
            for out in produced:
                out["path"] = str(Path(out["path"]).relative_to(ctx.build_dir))
            ctx.outputs = produced
        else:  # the snapshot itself is the one output
            ctx.outputs = [
                {"format": "qcow2", "compression": image["compression"], "path": image["path"],
                 "sha256": image["sha256"], "size": image["size"]}
            ]  # fmt: skip
        entries = {(image["sha256"], image["path"])}
        entries.update((o["sha256"], o["path"]) for o in ctx.outputs)
        write_sums(ctx.build_dir, sorted(entries, key=lambda e: e[1]))
        ctx.join_pending()
        if ctx.overlay is not None:  # in the image now, and no test VM reads it any more
            ctx.overlay.unlink(missing_ok=True)
        write_manifest(ctx)
        ctx.facts["complete"] = True


class Distribute(BaseStage):
    name = "distribute"
    title = "Distributing the image"

    def run(self, ctx: BuildContext) -> None:
        results = distribute(ctx.build_dir)
        ctx.facts["distributed"] = [r["store"] for r in results]
