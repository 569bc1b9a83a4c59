"""Snapshot: flatten the build overlay (and its backing chain) into a standalone qcow2.

When a test VM comes next and the recipe wants a compressed image, the snapshot is
written uncompressed first (about a second). The test VM boots those bytes, while
`image.qcow2` is compressed from them in the background at low CPU priority; the
output stage waits for it. Compressing is the slow part, and it overlaps the test
VM's boot instead of delaying it. Without a test VM, the snapshot is compressed
directly into `image.qcow2`.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from pathlib import Path

from vmbuild import disk, events
from vmbuild.build import BuildContext
from vmbuild.fsutil import atomic_path, sha256_file
from vmbuild.pipeline import BaseStage
from vmbuild.proc import Background

BACKGROUND_NICE = 19


class ImageJob:
    """`image.qcow2` being compressed from the snapshot in the background, then checked
    and hashed there too, so the output stage only picks up the result."""

    def __init__(self, ctx: BuildContext, snapshot: Path, compression: str) -> None:
        self.ctx = ctx
        self.compression = compression
        self.dest = ctx.build_dir / "image.qcow2"
        self._stack = contextlib.ExitStack()
        self.tmp = self._stack.enter_context(atomic_path(self.dest))
        try:
            argv = disk.convert_argv(snapshot, self.tmp, "qcow2", compress=True,
                                     options={"compression_type": compression})  # fmt: skip
            self._job = Background(argv, nice=BACKGROUND_NICE)
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._digest: Future[str] = Future()
        events.in_thread(self._complete, "image-job")

    def _complete(self) -> None:
        """In a thread: wait for the compression, check the image, hash it."""
        try:
            self._job.wait()
            disk.check(self.tmp)
            self._digest.set_result(sha256_file(self.tmp))
        except BaseException as exc:  # handed to finish()
            self._digest.set_exception(exc)

    def finish(self) -> tuple[Path, str]:
        """Wait for it; put it under its final name. Returns the image and its sha256."""
        try:
            digest = self._digest.result()
        except BaseException as exc:
            self._job.stop()
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack.close()
        return self.dest, digest

    def stop(self) -> None:
        """Kill it and remove the partial file."""
        self._job.stop()
        error = RuntimeError("stopped")
        self._stack.__exit__(RuntimeError, error, None)


def record_image(
    ctx: BuildContext, image: Path, compression: str, sha256: str | None = None
) -> None:
    """Make `image` the build's image and describe it for the manifest (`sha256` when
    it is known already)."""
    ctx.image = image
    info = disk.info(image)
    ctx.facts["image"] = {
        "path": image.name,
        "format": "qcow2",
        "compression": compression,
        "virtual_size": info.virtual_size,
        "size": image.stat().st_size,
        "sha256": sha256 or sha256_file(image),
    }
    events.info(f"image: {image} ({image.stat().st_size / 2**20:.0f} MiB, {compression})")


def finish_image(ctx: BuildContext) -> None:
    """Wait for a background compression, if one runs, and record its image."""
    job: ImageJob | None = ctx.image_job
    if job is None:
        return
    with events.stage("compress", "Waiting for the compressed image"):
        image, digest = job.finish()
        record_image(ctx, image, job.compression, digest)
    ctx.image_job = None


class Snapshot(BaseStage):
    name = "snapshot"
    title = "Flattening the build disk into the new image"

    def run(self, ctx: BuildContext) -> None:
        assert ctx.overlay is not None
        compression = ctx.recipe.snapshot.compression.value
        if compression != "none" and ctx.tests_image:
            snapshot = ctx.tmp / "snapshot.qcow2"
            with atomic_path(snapshot) as tmp:
                disk.convert(ctx.overlay, tmp, "qcow2")
                disk.check(tmp)
            ctx.snapshot = snapshot
            ctx.image_job = ImageJob(ctx, snapshot, compression)
            events.info(f"snapshot: {snapshot} (uncompressed, for the test VM); "
                        f"compressing {ctx.image_job.dest.name} in the background")  # fmt: skip
        else:
            dest = ctx.build_dir / "image.qcow2"
            options = {} if compression == "none" else {"compression_type": compression}
            with atomic_path(dest) as tmp:
                disk.convert(ctx.overlay, tmp, "qcow2", options=options,
                             compress=compression != "none")  # fmt: skip
                disk.check(tmp)
            ctx.snapshot = dest
            record_image(ctx, dest, compression)
        ctx.overlay.unlink(missing_ok=True)

    def cleanup(self, ctx: BuildContext) -> None:
        if ctx.image_job is not None:
            ctx.image_job.stop()
            ctx.image_job = None
