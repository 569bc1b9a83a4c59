"""Disk assembly pieces with the real tools on small files: MBR layout, loop cleanup."""

from pathlib import Path

import pytest

from vmbuild.bootstrap.assemble import (
    PARTITION_START,
    _mbr_bin,
    extlinux_conf,
    loop_device,
    partition,
)
from vmbuild.proc import run


def test_partition_writes_boot_code_and_one_bootable_partition(tmp_path: Path):
    raw = tmp_path / "disk.raw"
    offset, length = partition(raw, 64 << 20)
    assert offset == PARTITION_START
    assert 0 < length <= (64 << 20) - PARTITION_START
    head = raw.read_bytes()[:512]
    assert head[:440] == _mbr_bin().read_bytes()[:440]
    assert head[510:512] == b"\x55\xaa"
    table = run(["parted", "-s", "-m", str(raw), "unit", "B", "print"]).stdout
    assert "msdos" in table
    assert "boot" in table.splitlines()[-1]


def test_loop_device_is_detached_even_after_an_error(tmp_path: Path):
    raw = tmp_path / "disk.raw"
    offset, length = partition(raw, 64 << 20)
    with pytest.raises(RuntimeError), loop_device(raw, offset, length) as dev:
        listed = run(["losetup", "--list", "--noheadings", "-O", "NAME,OFFSET", dev]).stdout
        assert str(PARTITION_START) in listed
        raise RuntimeError("boom")
    assert run(["losetup", "--associated", str(raw)]).stdout.strip() == ""


def test_extlinux_conf_boots_the_default_at_once():
    conf = extlinux_conf("/vmlinuz", "/initrd.img", "root=UUID=x ro console=ttyS0", 0)
    assert "PROMPT 0" in conf
    assert "TIMEOUT 1" in conf  # 0 would mean: wait forever
    assert "APPEND root=UUID=x ro console=ttyS0" in conf
