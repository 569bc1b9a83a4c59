"""Files and digests: atomic writes, sha256 of files, cache keys over canonical JSON."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CHUNK = 4 * 1024 * 1024


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(obj: Any) -> str:
    """sha256 over canonical JSON (sorted keys, no spaces) of what determines a result."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success fsync and rename it over `dest`.

    On any exception the temporary file is removed, so no half-written file is
    ever visible under the final name.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; callers may tighten it
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, dest)
        fsync_dir(dest.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(dest: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside `dest` for writing; renamed over `dest` on success."""
    with atomic_path(dest) as tmp, open(tmp, mode) as fh:
        yield fh


def write_json(dest: str | Path, data: Any) -> None:
    """Write JSON atomically, indented, keys sorted."""
    with atomic_open(dest) as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
