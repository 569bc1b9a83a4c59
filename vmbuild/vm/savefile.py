"""libvirt's QEMU save-image format: read and rewrite the domain XML it carries.

A save image is a header (`LibvirtQemudSave`, version, data length, ...), the domain
XML and a cookie, then QEMU's migration stream. libvirt only restores a save image
under the name and UUID it was saved with, so several builds cannot restore one
warm state at once. `retarget()` writes a per-build copy whose XML has a new name,
UUID, disk, console log and port forward; the migration stream is copied unchanged
(in the kernel, with copy_file_range).

The header layout is libvirt's (src/qemu/qemu_saveimage.h, version 2); anything else
is refused, and the caller falls back to a cold boot.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"LibvirtQemudSave"
PARTIAL = b"LibvirtQemudPart"
HEADER = struct.Struct("<16s5I14I")  # magic, version, data_len, was_running, compressed,
#                                       cookieOffset, unused[14]
SUPPORTED_VERSIONS = (2,)


class SaveFileError(Exception):
    """The file is not a complete libvirt QEMU save image we can rewrite."""


@dataclass(frozen=True)
class SaveImage:
    path: Path
    version: int
    was_running: int
    compressed: int
    xml: str
    cookie: bytes  # NUL-terminated cookie XML, or b""
    stream_offset: int  # where QEMU's migration stream starts


def read(path: str | Path) -> SaveImage:
    """Parse the header and XML of a save image."""
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read(HEADER.size)
        if len(raw) < HEADER.size:
            raise SaveFileError(f"{path}: too short for a save image")
        magic, version, data_len, was_running, compressed, cookie_offset, *_ = HEADER.unpack(raw)
        if magic == PARTIAL:
            raise SaveFileError(f"{path}: an incomplete save image (libvirt was interrupted)")
        if magic != MAGIC:
            raise SaveFileError(f"{path}: not a libvirt QEMU save image")
        if version not in SUPPORTED_VERSIONS:
            raise SaveFileError(f"{path}: save image version {version} is not supported")
        data = fh.read(data_len)
    if len(data) != data_len:
        raise SaveFileError(f"{path}: truncated header data")
    xml_end = cookie_offset if cookie_offset else data_len
    xml = data[:xml_end].split(b"\0", 1)[0].decode()
    cookie = data[cookie_offset:].split(b"\0", 1)[0] + b"\0" if cookie_offset else b""
    if os.path.getsize(path) <= HEADER.size + data_len:
        raise SaveFileError(f"{path}: no migration stream after the header")
    return SaveImage(path, version, was_running, compressed, xml, cookie,
                     HEADER.size + data_len)  # fmt: skip


def write(image: SaveImage, xml: str, dest: str | Path) -> Path:
    """Copy `image` to `dest` with `xml` in place of its domain XML."""
    dest = Path(dest)
    xml_bytes = xml.encode() + b"\0"
    data = xml_bytes + image.cookie
    # libvirt leaves room after the XML for later edits; keep the same habit.
    data += b"\0" * (1024 - len(data) % 1024 if len(data) % 1024 else 0)
    cookie_offset = len(xml_bytes) if image.cookie else 0
    header = HEADER.pack(MAGIC, image.version, len(data), image.was_running,
                         image.compressed, cookie_offset, *([0] * 14))  # fmt: skip
    size = os.path.getsize(image.path) - image.stream_offset
    with open(image.path, "rb") as src, open(dest, "wb") as out:
        out.write(header + data)
        out.flush()
        offset_in, remaining = image.stream_offset, size
        while remaining > 0:
            copied = os.copy_file_range(src.fileno(), out.fileno(), remaining, offset_in)
            if copied == 0:
                raise SaveFileError(f"{image.path}: migration stream ended early")
            offset_in += copied
            remaining -= copied
    return dest
