"""qemu-img operations: info, overlays, resize, convert, compare.

Every call goes through `vmbuild.proc.run`; images are never modified in place
unless the function says so (`resize`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmbuild.proc import run


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    format: str
    virtual_size: int
    actual_size: int
    backing_file: str | None
    compression: str | None
    raw: dict[str, Any]


def info(path: str | Path, *, backing_chain: bool = False) -> ImageInfo:
    """`qemu-img info --output=json` of an image (format probed)."""
    argv = ["qemu-img", "info", "--output=json", "-U"]
    if backing_chain:
        argv.append("--backing-chain")
    data = json.loads(run([*argv, str(path)]).stdout)
    top = data[0] if isinstance(data, list) else data
    return ImageInfo(
        path=Path(path),
        format=top["format"],
        virtual_size=int(top["virtual-size"]),
        actual_size=int(top.get("actual-size", 0)),
        backing_file=top.get("backing-filename"),
        compression=(top.get("format-specific", {}).get("data", {}) or {}).get("compression-type"),
        raw=top,
    )


def create(path: str | Path, size: int | str, fmt: str = "qcow2") -> Path:
    """A new empty image of `size` bytes (or a qemu-img size string such as `4G`)."""
    run(["qemu-img", "create", "-q", "-f", fmt, str(path), str(size)])
    return Path(path)


def overlay(parent: str | Path, path: str | Path, *, size: int | None = None) -> Path:
    """A qcow2 overlay backed by `parent` (absolute path); the parent is never written."""
    parent = Path(parent).resolve()
    parent_fmt = info(parent).format
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", parent_fmt, "-b", str(parent)]
    argv.append(str(path))
    if size is not None:
        argv.append(str(size))
    run(argv)
    return Path(path)


def resize(path: str | Path, size: int) -> None:
    """Grow an image to `size` bytes (never shrinks: a smaller size is a no-op)."""
    if info(path).virtual_size < size:
        run(["qemu-img", "resize", "-q", str(path), str(size)])


def convert_argv(
    source: str | Path,
    dest: str | Path,
    fmt: str,
    *,
    options: dict[str, str] | None = None,
    compress: bool = False,
    threads: int | None = None,
    source_format: str | None = None,
) -> list[str]:
    """The `qemu-img convert` command line, with multi-threaded coroutines (-m) and
    out-of-order writes (-W).

    `options` become `-o k=v,...` (for example `compression_type=zstd`,
    `subformat=streamOptimized`).
    """
    argv = ["qemu-img", "convert", "-q", "-O", fmt]
    if source_format:
        argv += ["-f", source_format]
    if compress:
        argv.append("-c")
    if options:
        argv += ["-o", ",".join(f"{k}={v}" for k, v in options.items())]
    argv += ["-m", str(threads or min(8, max(2, os.cpu_count() or 2))), "-W"]
    return [*argv, str(source), str(dest)]


def convert(source: str | Path, dest: str | Path, fmt: str, **options: Any) -> Path:
    """Run `qemu-img convert`; `options` are `convert_argv`'s keyword arguments."""
    run(convert_argv(source, dest, fmt, **options))
    return Path(dest)


def compare(a: str | Path, b: str | Path) -> bool:
    """True when both images hold the same guest-visible content (`qemu-img compare`)."""
    proc = run(["qemu-img", "compare", "-q", str(a), str(b)], check=False)
    if proc.returncode not in (0, 1):
        from vmbuild.errors import CommandError

        raise CommandError(["qemu-img", "compare", str(a), str(b)], proc.returncode, proc.stderr)
    return proc.returncode == 0


def check(path: str | Path) -> None:
    """`qemu-img check`; raises CommandError on corruption."""
    run(["qemu-img", "check", "-q", str(path)])
