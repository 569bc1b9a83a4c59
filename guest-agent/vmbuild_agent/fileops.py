"""Shared helpers of the file actions: modes, owners, encodings, atomic writes."""

from __future__ import annotations

import codecs
import contextlib
import grp
import os
import pwd
import tempfile
from collections.abc import Iterator
from typing import Any

from vmbuild_agent.errors import StepFailed


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
_ENCODING_ALIASES = {
    "utf8": "utf-8",
    "utf-8": "utf-8",
    "unicode": "utf-16-le",
    "utf16": "utf-16",
    "utf-16": "utf-16",
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
    "utf32": "utf-32",
    "ascii": "ascii",
    "latin1": "latin-1",
}


def codec(name: Any) -> str:
    """A Python codec name for an AWSTOE encoding name (utf8, utf-16, ascii, ...)."""
    key = str(name or "utf8").strip().lower()
    resolved = _ENCODING_ALIASES.get(key, key)
    try:
        codecs.lookup(resolved)
    except LookupError:
        raise StepFailed(f"unknown encoding {name!r}") from None
    return resolved


def parse_mode(value: Any) -> int:
    """Permissions as octal text ('0755', '755') or a YAML integer.

    YAML 1.1 reads 0755 as the integer 493, while 755 stays 755: an integer whose digits
    are all octal is read as octal digits, any other integer as the mode itself.
    """
    text = str(value).strip()
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(text, 8) if set(text) <= set("01234567") else value
        return int(text, 8)
    except ValueError:
        raise StepFailed(f"invalid permissions {value!r}: use octal like 0755") from None


def uid_of(owner: Any) -> int:
    text = str(owner).strip()
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise StepFailed(f"unknown user {owner!r}") from None


def gid_of(group: Any) -> int:
    text = str(group).strip()
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise StepFailed(f"unknown group {group!r}") from None


def apply_attributes(
    path: str, owner: Any = None, group: Any = None, permissions: Any = None
) -> None:
    """chown/chmod `path` as asked (owner and group by name or number)."""
    try:
        if owner not in (None, "") or group not in (None, ""):
            uid = uid_of(owner) if owner not in (None, "") else -1
            gid = gid_of(group) if group not in (None, "") else -1
            os.lchown(path, uid, gid)
        if permissions not in (None, ""):
            os.chmod(path, parse_mode(permissions))
    except OSError as exc:
        raise StepFailed(f"{path}: {exc.strerror}") from None


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator[Any]:
    """Write beside `path` and rename over it on success; nothing half-written stays."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=folder)
    try:
        # mkstemp makes 0600; a new file gets the usual umask mode, a replaced one keeps its own.
        try:
            os.fchmod(fd, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fail(path: str, exc: OSError, what: str) -> StepFailed:
    return StepFailed(f"{what} {path}: {exc.strerror or exc}")


def detect_encoding(data: bytes) -> str | None:
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return name
    return None
