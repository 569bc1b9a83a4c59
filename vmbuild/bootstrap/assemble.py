"""Disk assembly: a root tree becomes a bootable raw disk (MBR, ext4, extlinux).

Partition devices do not appear on these hosts, so the file system is made on
a loop device set up at the partition's offset (`losetup -o`). Every loop
device and mount is undone on exit, also after an error or an interrupt.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from vmbuild import events
from vmbuild.errors import BuildError
from vmbuild.proc import run
from vmbuild.signals import shielded

PARTITION_START = 1 << 20  # 1 MiB: the usual alignment, leaves room for the MBR boot code
MBR_BIN = Path("/usr/lib/EXTLINUX/mbr.bin")
MBR_BIN_ALTERNATIVES = (MBR_BIN, Path("/usr/lib/syslinux/mbr/mbr.bin"))
# syslinux reads ext4 but not every newer feature; keep the file system to what it knows.
EXT4_FEATURES = "^64bit,^metadata_csum_seed,^orphan_file"


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def unmount_under(path: Path) -> None:
    """Unmount everything mounted at or below `path`, deepest first."""
    for point in sorted(mounts_under(path), key=len, reverse=True):
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "--lazy", point], check=False)
    left = mounts_under(path)
    if left:
        raise BuildError(f"could not unmount {', '.join(left)}")


def detach_loops(image: Path) -> None:
    """Detach every loop device backed by `image`."""
    if not image.exists():
        return
    proc = run(
        ["losetup", "--list", "--noheadings", "--output", "NAME", "--associated", str(image)]
    )
    for dev in proc.stdout.split():
        run(["losetup", "--detach", dev], check=False)


@contextlib.contextmanager
def loop_device(image: Path, offset: int, size: int) -> Iterator[str]:
    """A loop device over `size` bytes of `image` from `offset`; detached on exit."""
    try:
        argv = ["losetup", "--find", "--show", "--offset", str(offset), "--sizelimit", str(size)]
        dev = run([*argv, str(image)]).stdout.strip()
        yield dev
    finally:
        # By backing file, not by name: also covers an interrupt before `dev` was known.
        with shielded():
            detach_loops(image)


@contextlib.contextmanager
def mounted(device: str, mountpoint: Path) -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    try:
        run(["mount", device, str(mountpoint)])
        yield mountpoint
    finally:
        with shielded():
            unmount_under(mountpoint)


def _mbr_bin() -> Path:
    for candidate in MBR_BIN_ALTERNATIVES:
        if candidate.is_file():
            return candidate
    raise BuildError("syslinux mbr.bin not found", hint="apt-get install extlinux syslinux-common")


def partition(raw: Path, size: int) -> tuple[int, int]:
    """Sparse raw disk with one bootable MBR partition; returns (offset, length) in bytes."""
    with open(raw, "wb") as fh:
        fh.truncate(size)
    run(["parted", "-s", str(raw), "mklabel", "msdos"])
    run(["parted", "-s", str(raw), "mkpart", "primary", "ext4", f"{PARTITION_START}B", "100%"])
    run(["parted", "-s", str(raw), "set", "1", "boot", "on"])
    table = run(["parted", "-s", "-m", str(raw), "unit", "B", "print"]).stdout
    for line in table.splitlines():
        fields = line.split(":")
        if fields[0] == "1":
            start, length = int(fields[1].rstrip("B")), int(fields[3].rstrip("B"))
            break
    else:
        raise BuildError(f"parted did not create a partition on {raw}:\n{table}")
    boot_code = _mbr_bin().read_bytes()[:440]
    with open(raw, "r+b") as fh:  # the boot code only: the partition table follows at 446
        fh.write(boot_code)
    return start, length


def extlinux_conf(kernel: str, initrd: str, cmdline: str, timeout: int) -> str:
    # PROMPT 0 boots the default at once; TIMEOUT is in tenths of a second.
    return (
        "DEFAULT linux\n"
        f"PROMPT 0\nTIMEOUT {max(timeout, 1)}\n"
        "LABEL linux\n"
        f"  LINUX {kernel}\n"
        f"  INITRD {initrd}\n"
        f"  APPEND {cmdline}\n"
    )


def assemble_disk(
    root: Path,
    raw: Path,
    *,
    size: int,
    fs_uuid: str,
    label: str,
    kernel: str,
    initrd: str,
    cmdline: str,
    timeout: int,
    workdir: Path,
) -> None:
    """Write `root` onto a new bootable raw disk at `raw`."""
    with events.stage("bootstrap-disk", "Making the disk (MBR, ext4, extlinux)"):
        offset, length = partition(raw, size)
        with loop_device(raw, offset, length) as dev:
            mkfs = ["mkfs.ext4", "-q", "-F", "-L", label, "-U", fs_uuid, "-O", EXT4_FEATURES]
            run([*mkfs, "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", str(root), dev])
            with mounted(dev, workdir / "mnt") as mnt:
                boot = mnt / "boot" / "extlinux"
                boot.mkdir(parents=True, exist_ok=True)
                (boot / "extlinux.conf").write_text(
                    extlinux_conf(kernel, initrd, f"root=UUID={fs_uuid} ro {cmdline}", timeout)
                )
                run(["extlinux", "--install", str(boot)])
                os.sync()
