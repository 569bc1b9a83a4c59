"""Snapshot: flatten the build overlay (and its backing chain) into a standalone qcow2.

When a test VM comes next, nothing is flattened on the way to it: the build VM is off,
so its overlay is final and read-only from here on. The test VM boots a throwaway
overlay of it (stages/test.py), the very bytes `image.qcow2` is being written from
meanwhile, in the background at low CPU priority (compressed or not, then checked and
hashed); the output stage waits for it. Flattening (and compressing, the slow part)
thus overlaps the test VM's boot instead of delaying it. Without a test VM, the image
is written directly.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from vmbuild import disk, events
from vmbuild.build import BuildContext
from vmbuild.formats import FormatSpec
from vmbuild.fsutil import atomic_path, sha256_file
from vmbuild.pipeline import BaseStage
from vmbuild.proc import Background

BACKGROUND_NICE = 19


class ImageJob:
    """`image.qcow2` being written from `source` (a qcow2 and its backing chain) in the
    background, compressed unless `compression` is "none", then checked and hashed there
    too, so the output stage only picks up the result. `written_seconds`: from the
    start until the image was written and checked."""

    def __init__(self, ctx: BuildContext, source: Path, compression: str) -> None:
        self.ctx = ctx
        self.compression = compression
        self.started = time.monotonic()
        self.written_seconds: float | None = None
        self.dest = ctx.build_dir / "image.qcow2"
        self._stack = contextlib.ExitStack()
        self.tmp = self._stack.enter_context(atomic_path(self.dest))
        try:
            argv = disk.convert_argv(source, self.tmp, "qcow2", **convert_options(compression))
            self._job = Background(argv, nice=BACKGROUND_NICE)
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._digest: Future[str] = events.submit(self._complete, "image-job")

    def _complete(self) -> str:
        """In a thread: wait for the conversion, check the image, hash it."""
        self._job.wait()
        disk.check(self.tmp)
        self.written_seconds = round(time.monotonic() - self.started, 3)
        return sha256_file(self.tmp)

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


def convert_options(compression: str) -> dict[str, Any]:
    """`disk.convert_argv` keywords for a qcow2 image with `compression` (zstd, zlib,
    none), as the qcow2 output format chooses them."""
    options, compress = FormatSpec("qcow2", compression=compression).qemu_options()
    return {"options": options, "compress": compress}


def record_image(
    ctx: BuildContext, image: Path, compression: str, written_seconds: float,
    sha256: str | None = None,
) -> None:  # fmt: skip
    """Make `image` the build's image and describe it for the manifest: `written_seconds`
    from the snapshot stage's start until it was written and checked; `sha256` when it
    is known already."""
    ctx.image = image
    info = disk.info(image)
    ctx.facts["image"] = {
        "path": image.name,
        "format": "qcow2",
        "compression": compression,
        "virtual_size": info.virtual_size,
        "size": image.stat().st_size,
        "sha256": sha256 or sha256_file(image),
        "written_seconds": written_seconds,
    }
    events.info(f"image: {image} ({image.stat().st_size / 2**20:.0f} MiB, {compression})")


def finish_image(ctx: BuildContext) -> None:
    """Wait for a background compression, if one runs, and record its image."""
    job: ImageJob | None = ctx.image_job
    if job is None:
        return
    with events.stage("compress", "Waiting for the image written in the background"):
        image, digest = job.finish()
        assert job.written_seconds is not None
        record_image(ctx, image, job.compression, job.written_seconds, digest)
    ctx.image_job = None


class Snapshot(BaseStage):
    name = "snapshot"
    title = "Flattening the build disk into the new image"

    def run(self, ctx: BuildContext) -> None:
        assert ctx.overlay is not None
        compression = ctx.recipe.snapshot.compression.value
        if ctx.tests_image:  # the test VM boots an overlay of ctx.overlay meanwhile
            ctx.image_job = ImageJob(ctx, ctx.overlay, compression)
            events.info(f"writing image.qcow2 ({compression}) from {ctx.overlay.name} in the "
                        "background; the test VM boots an overlay of the same disk")  # fmt: skip
            return
        start = time.monotonic()
        dest = ctx.build_dir / "image.qcow2"
        with atomic_path(dest) as tmp:
            disk.convert(ctx.overlay, tmp, "qcow2", **convert_options(compression))
            disk.check(tmp)
        record_image(ctx, dest, compression, round(time.monotonic() - start, 3))
        ctx.overlay.unlink(missing_ok=True)

    def cleanup(self, ctx: BuildContext) -> None:
        if ctx.image_job is not None:
            ctx.image_job.stop()
            ctx.image_job = None
