"""One bootstrap build: root tree -> raw disk -> zstd-compressed qcow2, with cleanup.

Everything the build creates (work folder, mounts, loop devices) is registered
for cleanup the moment it exists and undone in reverse on success, error,
Ctrl-C and SIGTERM (`vmbuild.signals`: SIGTERM raises like Ctrl-C, and cleanup
is shielded from a second signal).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vmbuild import disk, events
from vmbuild.bootstrap.assemble import assemble_disk, detach_loops, mounts_under, unmount_under
from vmbuild.bootstrap.definition import Definition
from vmbuild.bootstrap.distributions import get_distribution
from vmbuild.errors import BuildError
from vmbuild.paths import cache_dir
from vmbuild.signals import interruptible, shielded

# Host tools the build runs (debootstrap also needs chroot and mount, from the base system).
TOOLS = ("debootstrap", "chroot", "parted", "losetup", "mount", "mkfs.ext4", "extlinux", "qemu-img")


def check_host() -> None:
    """Fail early, with a hint, when the host cannot bootstrap (not root, missing tools)."""
    if os.geteuid() != 0:
        raise BuildError(
            "bootstrapping a base image needs root (debootstrap, loop devices, mounts)",
            hint="run as root, or use a ready cloud image as the recipe's parent",
        )
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise BuildError(
            f"missing host tools: {', '.join(missing)}",
            hint="make setup (scripts/setup-host.sh installs them)",
        )


def _remove_workdir(work: Path) -> None:
    with shielded():  # a second Ctrl-C must not leave a half-removed tree or a mount
        _unmount_and_remove(work)


def _unmount_and_remove(work: Path) -> None:
    unmount_under(work)
    if mounts_under(work):  # never let rmtree walk into a mounted /proc or /dev
        raise BuildError(f"{work} still has mounts; not removing it")
    shutil.rmtree(work, ignore_errors=True)


def _tree_bytes(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def build_image(definition: Definition, mirror: str, dest: Path) -> dict[str, Any]:
    """Build the image for `definition` into `dest` (qcow2); returns sizes and durations."""
    durations: dict[str, float] = {}
    stats: dict[str, Any] = {"durations": durations}

    @contextlib.contextmanager
    def timed(name: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        durations[name] = round(time.monotonic() - start, 1)

    check_host()
    with interruptible(), contextlib.ExitStack() as stack:
        base = cache_dir("bootstrap")
        work = Path(tempfile.mkdtemp(prefix="work-", dir=base))
        stack.callback(_remove_workdir, work)
        root, raw = work / "root", work / "disk.raw"
        stack.callback(detach_loops, raw)
        distribution = get_distribution(definition, mirror)
        fs_uuid = str(uuid.uuid4())
        package_cache = base / "packages" / f"{definition.distribution}-{definition.release}"
        with timed("root"):
            distribution.build_root(root, package_cache=package_cache, fs_uuid=fs_uuid)
        kernel, initrd = distribution.kernel_paths(root)
        stats["root_tree_bytes"] = _tree_bytes(root)
        with timed("disk"):
            assemble_disk(
                root,
                raw,
                size=definition.disk_size,
                fs_uuid=fs_uuid,
                label=definition.fs_label,
                kernel=kernel,
                initrd=initrd,
                cmdline=definition.kernel_cmdline,
                timeout=definition.boot_timeout,
                workdir=work,
            )
        with timed("convert"), events.stage("bootstrap-convert", "Compressing to qcow2 (zstd)"):
            disk.convert(
                raw,
                dest,
                "qcow2",
                source_format="raw",
                compress=True,
                options={"compression_type": "zstd"},
            )
        stats["fs_uuid"] = fs_uuid
    return stats
