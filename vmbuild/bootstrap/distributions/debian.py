"""Debian (and derivatives with the same tooling): debootstrap, apt sources, initramfs-tools."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from vmbuild.bootstrap.distributions import Distribution
from vmbuild.proc import run

# Networking: systemd-networkd does DHCP on the first Ethernet NIC even before (or
# without) cloud-init; cloud-init's own networkd files (10-cloud-init-*) take precedence.
DHCP_NETWORK = """\
# Written by vmbuild bootstrap: DHCP on any wired NIC unless cloud-init configured it.
[Match]
Type=ether
Name=en* eth*

[Network]
DHCP=yes

[DHCPv4]
UseDomains=yes
"""

# An image without baked-in host keys must still be reachable when cloud-init did not
# run (no seed). The condition is checked by systemd itself, so when cloud-init made
# the keys (the usual case) this costs no process at boot.
SSH_HOSTKEYS_UNIT = """\
[Unit]
Description=Generate SSH host keys when none exist (vmbuild)
After=cloud-init.service
Before=ssh.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
"""


class Debian(Distribution):
    name = "debian"

    def _chroot(self, root: Path, *argv: str) -> None:
        run(
            ["chroot", str(root), *argv],
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "DEBIAN_FRONTEND": "noninteractive",
                "LC_ALL": "C.UTF-8",
            },
        )

    def install(self, root: Path, package_cache: Path) -> None:
        d = self.definition
        package_cache.mkdir(parents=True, exist_ok=True)
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--arch={d.architecture}",
                f"--cache-dir={package_cache}",
                "--merged-usr",
                f"--include={','.join(d.packages)}",
                d.release,
                str(root),
                self.mirror,
            ],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
        )

    def configure(self, root: Path, fs_uuid: str) -> None:
        d = self.definition
        etc = root / "etc"
        # debootstrap leaves the build host's identity and a one-line source behind.
        (etc / "apt" / "sources.list").unlink(missing_ok=True)
        (etc / "apt" / "sources.list.d" / "debian.sources").write_text(
            f"Types: deb\nURIs: {self.mirror}\nSuites: {d.release} {d.release}-updates\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        (etc / "hostname").write_text(f"{d.hostname}\n")
        (etc / "hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{d.hostname}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
        )
        (etc / "fstab").write_text(
            f"UUID={fs_uuid}\t/\t{d.filesystem}\tdefaults,errors=remount-ro\t0\t1\n"
        )
        self._chroot(root, "passwd", "--lock", "root")

        network = etc / "systemd" / "network"
        network.mkdir(parents=True, exist_ok=True)
        (network / "90-vmbuild-dhcp.network").write_text(DHCP_NETWORK)
        (etc / "systemd" / "system" / "vmbuild-ssh-hostkeys.service").write_text(SSH_HOSTKEYS_UNIT)

        if d.cloud_init:
            cfg = etc / "cloud" / "cloud.cfg.d" / "90-vmbuild.cfg"
            cfg.parent.mkdir(parents=True, exist_ok=True)
            # ds-identify reads datasource_list only from a one-line flow sequence.
            body = yaml.safe_dump(d.cloud_init, default_flow_style=None, sort_keys=False)
            cfg.write_text(
                "# Written by vmbuild bootstrap from the base-image definition.\n" + body
            )
        for dest, content in d.files.items():
            target = root / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)

        enable = ["systemd-networkd.service", "vmbuild-ssh-hostkeys.service", *d.enable_units]
        self._chroot(root, "systemctl", "enable", *enable)
        if d.disable_units:
            self._chroot(root, "systemctl", "disable", *d.disable_units)
        if d.mask_units:
            self._chroot(root, "systemctl", "mask", *d.mask_units)

    def build_initramfs(self, root: Path) -> None:
        d = self.definition
        conf = root / "etc" / "initramfs-tools"
        if d.initramfs_modules:
            # MODULES=list: only what the definition names (MODULES=dep would probe the
            # build host's hardware from inside the chroot).
            (conf / "modules").write_text("\n".join(d.initramfs_modules) + "\n")
            modules = "MODULES=list\n"
        else:
            modules = "MODULES=most\n"
        (conf / "conf.d" / "vmbuild.conf").write_text(
            f"{modules}COMPRESS={d.initramfs_compress}\nRESUME=none\n"
        )
        self._chroot(root, "update-initramfs", "-u", "-k", "all")

    def clean(self, root: Path) -> None:
        # Per-machine identity is created on first boot: empty machine-id (systemd
        # fills it), no SSH host keys (cloud-init or the ssh drop-in makes them).
        (root / "etc" / "machine-id").write_text("")
        dbus_id = root / "var" / "lib" / "dbus" / "machine-id"
        if dbus_id.exists() and not dbus_id.is_symlink():
            dbus_id.unlink()
        for key in (root / "etc" / "ssh").glob("ssh_host_*"):
            key.unlink()
        (root / "var" / "lib" / "systemd" / "random-seed").unlink(missing_ok=True)
        for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/log/*.log"):
            for path in root.glob(pattern):
                path.unlink()
        lists = root / "var" / "lib" / "apt" / "lists"
        for path in lists.iterdir() if lists.is_dir() else ():
            if path.is_file():
                path.unlink()
        shutil.rmtree(root / "var" / "log" / "apt", ignore_errors=True)
        (root / "var" / "log" / "apt").mkdir(exist_ok=True)

    def kernel_paths(self, root: Path) -> tuple[str, str]:
        # Debian keeps /vmlinuz and /initrd.img pointing at the newest kernel, so a
        # kernel upgrade inside the guest stays bootable without touching extlinux.conf.
        for link in ("vmlinuz", "initrd.img"):
            if not (root / link).exists():
                from vmbuild.errors import BuildError

                raise BuildError(f"/{link} missing in the bootstrapped tree (no kernel installed?)")
        return "/vmlinuz", "/initrd.img"
