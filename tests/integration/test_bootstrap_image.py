"""The bootstrapped base image, inspected without booting: format, kernel, packages, identity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vmbuild import disk
from vmbuild.bootstrap import read_meta
from vmbuild.bootstrap.assemble import PARTITION_START
from vmbuild.proc import run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def root_fs(base_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """debugfs spec of the root file system on a raw copy of the image (never the image)."""
    raw = tmp_path_factory.mktemp("bootstrap-raw") / "disk.raw"
    disk.convert(base_image, raw, "raw")
    yield f"{raw}?offset={PARTITION_START}"
    raw.unlink()


def _debugfs(spec: str, request: str) -> str:
    return run(["debugfs", "-R", request, spec]).stdout


def _cat(spec: str, path: str) -> str:
    return _debugfs(spec, f"cat {path}")


def _names(spec: str, folder: str) -> list[str]:
    return _debugfs(spec, f"ls -p {folder}").replace("/", " ").split()


def test_image_is_compressed_qcow2_with_meta(base_image: Path):
    info = disk.info(base_image)
    meta = read_meta(base_image)
    assert info.format == "qcow2"
    assert info.compression == "zstd"
    assert info.backing_file is None
    assert meta is not None
    assert meta["virtual_size"] == info.virtual_size == 4 << 30


def test_kernel_bootloader_and_fstab(root_fs: str, base_image: Path):
    meta = read_meta(base_image) or {}
    boot = " ".join(_names(root_fs, "/boot"))
    assert "vmlinuz-" in boot and "initrd.img-" in boot
    conf = _cat(root_fs, "/boot/extlinux/extlinux.conf")
    assert f"root=UUID={meta['fs_uuid']}" in conf
    assert "console=ttyS0" in conf
    assert "ldlinux.sys" in " ".join(_names(root_fs, "/boot/extlinux"))
    assert f"UUID={meta['fs_uuid']}" in _cat(root_fs, "/etc/fstab")


def test_cloud_init_sshd_and_mirror(root_fs: str, base_image: Path):
    meta = read_meta(base_image) or {}
    assert "cloud-init" in _names(root_fs, "/usr/bin")
    assert "sshd" in _names(root_fs, "/usr/sbin")
    cfg = _cat(root_fs, "/etc/cloud/cloud.cfg.d/90-vmbuild.cfg")
    assert "datasource_list: [NoCloud, None]" in cfg
    assert f"URIs: {meta['mirror']}" in _cat(root_fs, "/etc/apt/sources.list.d/debian.sources")


def test_no_baked_in_identity(root_fs: str):
    assert not [n for n in _names(root_fs, "/etc/ssh") if n.startswith("ssh_host_")]
    assert "machine-id" in _names(root_fs, "/etc")  # present and empty: systemd fills it
    assert _cat(root_fs, "/etc/machine-id") == ""
    shadow = dict(line.split(":", 2)[:2] for line in _cat(root_fs, "/etc/shadow").splitlines())
    assert shadow["root"].startswith(("!", "*"))


def test_first_boot_tweaks(root_fs: str, base_image: Path):
    meta = read_meta(base_image) or {}
    for unit in meta["content"]["services"]["mask"]:  # apt timers and friends never run
        stat = _debugfs(root_fs, f"stat /etc/systemd/system/{unit}")
        assert 'Fast link dest: "/dev/null"' in stat, unit
    wants = _names(root_fs, "/etc/systemd/system/multi-user.target.wants")
    assert "systemd-networkd.service" in wants  # DHCP on the first NIC
    assert "DHCP=yes" in _cat(root_fs, "/etc/systemd/network/90-vmbuild-dhcp.network")
    assert "PROMPT 0" in _cat(root_fs, "/boot/extlinux/extlinux.conf")
