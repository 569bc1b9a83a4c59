"""Read files inside a disk image without booting it: a raw copy plus debugfs (e2fsprogs).

The image itself is never opened for writing; the raw copy is removed on close.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

from vmbuild import disk
from vmbuild.proc import run


def _first_linux_partition(raw: Path) -> int:
    """Byte offset of the first MBR partition of type 0x83 (Linux)."""
    with open(raw, "rb") as fh:
        mbr = fh.read(512)
    if mbr[510:512] != b"\x55\xaa":
        raise ValueError(f"{raw}: no MBR partition table")
    for i in range(4):
        entry = mbr[446 + 16 * i : 446 + 16 * (i + 1)]
        if entry[4] == 0x83:
            return struct.unpack_from("<I", entry, 8)[0] * 512
    raise ValueError(f"{raw}: no Linux partition")


class ImageFS:
    """The first Linux (ext*) partition of an image, read through debugfs."""

    def __init__(self, image: Path) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="imagefs-", dir="/var/tmp")
        raw = Path(self._tmp.name) / "disk.raw"
        disk.convert(image, raw, "raw")
        self.spec = f"{raw}?offset={_first_linux_partition(raw)}"

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> ImageFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _debugfs(self, request: str) -> str:
        return run(["debugfs", "-R", request, self.spec]).stdout

    def read(self, path: str) -> str:
        return self._debugfs(f"cat {path}")

    def names(self, folder: str) -> list[str]:
        """Entry names of a folder (without . and ..); empty if it does not exist."""
        proc = run(["debugfs", "-R", f"ls -p {folder}", self.spec])
        names = []
        for line in proc.stdout.splitlines():
            fields = line.strip().strip("/").split("/")
            if len(fields) >= 5 and fields[4] not in (".", ".."):
                names.append(fields[4])
        return names

    def exists(self, path: str) -> bool:
        proc = run(["debugfs", "-R", f"stat {path}", self.spec], check=False)
        return "File not found" not in proc.stderr and proc.returncode == 0 and bool(proc.stdout)

    def tree(self) -> dict[str, str]:
        """Every path in the file system with its type (`d`, `f`, `l` or `o`).

        Walks a read-only loop mount (`noload`: no journal replay) of the raw copy.
        """
        raw, offset = self.spec.split("?offset=")
        mnt = Path(self._tmp.name) / "mnt"
        mnt.mkdir(exist_ok=True)
        run(["mount", "-o", f"ro,loop,noload,offset={offset}", raw, str(mnt)])
        try:
            found: dict[str, str] = {}
            for top, dirs, files in os.walk(mnt):
                rel = "/" + os.path.relpath(top, mnt).removeprefix(".").lstrip("/")
                for name in dirs:
                    kind = "l" if os.path.islink(os.path.join(top, name)) else "d"
                    found[os.path.join(rel, name)] = kind
                for name in files:
                    full = os.path.join(top, name)
                    kind = "l" if os.path.islink(full) else "f" if os.path.isfile(full) else "o"
                    found[os.path.join(rel, name)] = kind
            return found
        finally:
            run(["umount", str(mnt)])

    def size(self, path: str) -> int:
        out = self._debugfs(f"stat {path}")
        for token in out.replace("\n", " ").split("Size: ")[1:2]:
            return int(token.split()[0])
        raise FileNotFoundError(path)
