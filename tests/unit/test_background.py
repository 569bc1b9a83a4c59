"""Work that runs while the build goes on: proc.Background and the snapshot's ImageJob
(real qemu-img on small images)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from vmbuild import disk
from vmbuild.errors import CommandError
from vmbuild.fsutil import sha256_file
from vmbuild.proc import Background
from vmbuild.stages.snapshot import ImageJob


def test_background_success_failure_and_stop(tmp_path: Path) -> None:
    ok = Background(["sh", "-c", f"echo done > {tmp_path / 'out'}"], nice=19)
    ok.wait(timeout=30)
    assert (tmp_path / "out").read_text() == "done\n"
    assert ok.argv[:3] == ["nice", "-n", "19"]

    bad = Background(["sh", "-c", "echo broken >&2; exit 3"])
    with pytest.raises(CommandError) as info:
        bad.wait(timeout=30)
    assert info.value.returncode == 3 and "broken" in str(info.value)

    slow = Background(["sleep", "60"])
    start = time.monotonic()
    slow.stop()
    assert slow.proc.returncode is not None and time.monotonic() - start < 5


def _snapshot(tmp_path: Path) -> Path:
    raw = tmp_path / "data.raw"
    with open(raw, "wb") as fh:  # some data worth compressing, some zeros
        fh.write(b"vmbuild " * 200_000)
        fh.truncate(64 * 2**20)
    snapshot = tmp_path / "snapshot.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", raw, snapshot], check=True)
    return snapshot


def test_image_job_compresses_the_same_bytes(tmp_path: Path) -> None:
    snapshot = _snapshot(tmp_path)
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    job = ImageJob(SimpleNamespace(build_dir=build_dir), snapshot, "zstd")
    image, digest = job.finish()
    assert image == build_dir / "image.qcow2"
    assert digest == sha256_file(image), "hashed in the background, after the compression"
    assert disk.info(image).compression == "zstd"
    assert disk.compare(image, snapshot)
    assert image.stat().st_size < snapshot.stat().st_size
    assert [p.name for p in build_dir.iterdir()] == ["image.qcow2"], "no temporary file left"


def test_stopped_image_job_leaves_nothing(tmp_path: Path) -> None:
    snapshot = _snapshot(tmp_path)
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    job = ImageJob(SimpleNamespace(build_dir=build_dir), snapshot, "zstd")
    job.stop()
    assert list(build_dir.iterdir()) == []
