"""Data and hole extents of a local file (SEEK_DATA/SEEK_HOLE), for sparse transfers."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator


def extents(fd: int, size: int | None = None) -> Iterator[tuple[int, int, bool]]:
    """Yield (offset, length, is_data) covering the file from 0 to its size, in order.

    Filesystems without hole support report one data extent, which is still correct.
    """
    end = os.fstat(fd).st_size if size is None else size
    pos = 0
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no data after pos
                raise
            data = end
        data = min(data, end)
        if data > pos:
            yield pos, data - pos, False
            pos = data
            if pos >= end:
                break
        hole = min(os.lseek(fd, pos, os.SEEK_HOLE), end)
        yield pos, hole - pos, True
        pos = hole


def copy_sparse(src: str | os.PathLike[str], dest: str | os.PathLike[str], progress=None) -> None:
    """Copy a file keeping its holes; `progress(nbytes)` is called as data is written."""
    chunk = 8 * 1024 * 1024
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        for offset, length, is_data in extents(fin.fileno(), size):
            if not is_data:
                if progress:
                    progress(length)
                continue
            fin.seek(offset)
            fout.seek(offset)
            remaining = length
            while remaining:
                buf = fin.read(min(chunk, remaining))
                if not buf:
                    break
                fout.write(buf)
                remaining -= len(buf)
                if progress:
                    progress(len(buf))
        fout.truncate(size)
