"""Snapshot: flatten the build overlay (and its backing chain) into a standalone qcow2."""

from __future__ import annotations

from vmbuild import disk, events
from vmbuild.build import BuildContext
from vmbuild.fsutil import atomic_path, sha256_file
from vmbuild.pipeline import BaseStage


class Snapshot(BaseStage):
    name = "snapshot"
    title = "Flattening the build disk into the new image"

    def run(self, ctx: BuildContext) -> None:
        assert ctx.overlay is not None
        compression = ctx.recipe.snapshot.compression.value
        dest = ctx.build_dir / "image.qcow2"
        options = {} if compression == "none" else {"compression_type": compression}
        with atomic_path(dest) as tmp:
            disk.convert(ctx.overlay, tmp, "qcow2", options=options, compress=compression != "none")
            disk.check(tmp)
        ctx.image = dest
        info = disk.info(dest)
        ctx.facts["image"] = {
            "path": dest.name,
            "format": "qcow2",
            "compression": compression,
            "virtual_size": info.virtual_size,
            "size": dest.stat().st_size,
            "sha256": sha256_file(dest),
        }
        events.info(f"image: {dest} ({dest.stat().st_size / 2**20:.0f} MiB, {compression})")
        ctx.overlay.unlink(missing_ok=True)
