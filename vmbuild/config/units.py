"""Sizes and durations as users write them: `8G`, `2048M`, `90s`, `10m`, or plain numbers.

Size suffixes are binary, as in qemu-img: 1K = 1024 bytes, 1G = 1024**3 bytes
(`K`, `KB`, `KiB` all mean the same).
"""

from __future__ import annotations

import re

MIB = 1024**2

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_BARE_B_RE = re.compile(r"^\s*(\d+)\s*b\s*$", re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])", re.IGNORECASE)


def parse_size(value: int | str, *, default_unit: str = "") -> int:
    """Bytes from an integer or a size string; `default_unit` applies to bare numbers in strings.

    Raises ValueError with a short reason.
    """
    if isinstance(value, bool):
        raise ValueError("not a size")
    if isinstance(value, int):
        return value * _SIZE_UNITS[default_unit.lower()]
    bare_bytes = _BARE_B_RE.match(value)
    if bare_bytes:
        return int(bare_bytes.group(1))
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"not a size: {value!r} (write e.g. 8G, 512M or a number of bytes)")
    number, unit = match.groups()
    factor = _SIZE_UNITS[(unit or default_unit).lower()]
    size = float(number) * factor
    if size != int(size):
        raise ValueError(f"not a whole number of bytes: {value!r}")
    return int(size)


def parse_memory_mib(value: int | str) -> int:
    """MiB from an integer (already MiB) or a size string (`2G`, `2048M`, bare numbers are MiB)."""
    size = parse_size(value, default_unit="m")
    if size % MIB:
        raise ValueError(f"not a whole number of MiB: {value!r}")
    return size // MIB


def parse_duration(value: int | str) -> int:
    """Whole seconds from an integer or a string such as `90`, `90s`, `10m`, `1h30m`."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    parts = _DURATION_RE.findall(text)
    if not parts or _DURATION_RE.sub("", text).strip():
        raise ValueError(f"not a duration: {value!r} (write e.g. 600, 90s, 10m or 1h30m)")
    seconds = sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in parts)
    return round(seconds)
