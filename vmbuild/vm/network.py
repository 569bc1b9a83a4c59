"""Guest networking: QEMU user-mode with host forwards on 127.0.0.1, or a libvirt network.

User mode (default) needs no bridge and no root: QEMU forwards a free port on
127.0.0.1 to the guest's sshd. libvirt 9.0 has no element for user-mode port
forwards (it rejects `<backend type='passt'/>`), so the NIC is given on QEMU's
command line (`<qemu:commandline>`) with an explicit PCI slot. A port is free
when chosen but may be taken before QEMU binds it; the launcher retries with a
new port when QEMU fails to set up the forward (`is_port_clash`). Forwards can be
added to a running VM with HMP `hostfwd_add` through the QEMU monitor, which a
restored VM (saved with its old forwards) needs.

Libvirt mode (`network: {mode: libvirt, name: default}`) attaches a virtio NIC
to a libvirt network; the guest address comes from the network's DHCP leases or,
failing that, the guest agent (`interfaceAddresses`).
"""

from __future__ import annotations

import ipaddress
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmbuild.errors import BuildError, InputError

LOOPBACK = "127.0.0.1"
USER_NETDEV_ID = "vmbuildnet0"
USER_NIC_SLOT = 0x10  # far above any slot libvirt picks for the devices in domain.py
SSH_PORT = 22
# The NIC has no option ROM: vmbuild's VMs boot from disk, and the firmware starting
# iPXE anyway costs about 0.2 s of every boot under TCG.


def random_mac() -> str:
    """A locally administered MAC in QEMU's 52:54:00 range."""
    tail = secrets.token_bytes(3)
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


@dataclass(frozen=True)
class Forward:
    host_port: int
    guest_port: int
    host_addr: str = LOOPBACK
    proto: str = "tcp"

    def hostfwd(self) -> str:
        """QEMU's `hostfwd=` rule text (also the HMP `hostfwd_add` argument)."""
        return f"{self.proto}:{self.host_addr}:{self.host_port}-:{self.guest_port}"


@dataclass(frozen=True)
class UserNetwork:
    """QEMU user-mode networking; `forwards[0]` is the SSH forward."""

    forwards: tuple[Forward, ...]
    mac: str
    netdev_id: str = USER_NETDEV_ID
    pci_slot: int = USER_NIC_SLOT
    pci_bus: str = "pci.0"  # the root bus: pci.0 on the pc machine, pcie.0 on q35

    @classmethod
    def with_ssh(cls, host_port: int, *, mac: str | None = None) -> UserNetwork:
        return cls((Forward(host_port, SSH_PORT),), mac or random_mac())

    @property
    def ssh_port(self) -> int:
        return self.forwards[0].host_port

    def qemu_args(self) -> list[str]:
        netdev = ",".join(
            [f"user,id={self.netdev_id}", *(f"hostfwd={f.hostfwd()}" for f in self.forwards)]
        )
        device = (  # romfile=: no option ROM
            f"virtio-net-pci,netdev={self.netdev_id},mac={self.mac},"
            f"bus={self.pci_bus},addr={self.pci_slot:#x},romfile="
        )
        return ["-netdev", netdev, "-device", device]


@dataclass(frozen=True)
class LibvirtNetwork:
    """A NIC on a libvirt network (a bridge the host provides)."""

    name: str
    mac: str

    def add_interface(self, devices: ET.Element, slot: int) -> None:
        from vmbuild.vm.domain import pci_address

        iface = ET.SubElement(devices, "interface", {"type": "network"})
        ET.SubElement(iface, "source", {"network": self.name})
        ET.SubElement(iface, "mac", {"address": self.mac})
        ET.SubElement(iface, "model", {"type": "virtio"})
        ET.SubElement(iface, "rom", {"enabled": "no"})  # no option ROM
        pci_address(iface, slot)


def from_config(config: Mapping[str, Any] | None, *, where: str = "network") -> dict[str, str]:
    """Validate a recipe's `network:` mapping; returns {'mode': ..., 'name': ...}."""
    config = dict(config or {})
    mode = config.pop("mode", "user")
    name = config.pop("name", "default")
    if config:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(config))}",
                         hint="allowed: mode, name")  # fmt: skip
    if mode not in ("user", "libvirt"):
        raise InputError(f"{where}.mode: unknown value {mode!r}", hint="use user or libvirt")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name: must be a libvirt network name")
    return {"mode": mode, "name": name}


def is_port_clash(message: str) -> bool:
    """True when QEMU failed because a forward's host port was taken."""
    text = message.lower()
    return "hostfwd" in text or "host forwarding rule" in text or "address already in use" in text


def hostfwd_add(domain: Any, forward: Forward, *, netdev_id: str = USER_NETDEV_ID) -> None:
    """Add a forward to a running VM through the QEMU monitor (HMP `hostfwd_add`)."""
    import libvirt_qemu

    command = f"hostfwd_add {netdev_id} {forward.hostfwd()}"
    reply = libvirt_qemu.qemuMonitorCommand(
        domain, command, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP
    )
    if reply.strip():  # HMP answers with text only on failure
        raise BuildError(f"could not add port forward {forward.hostfwd()}: {reply.strip()}")


def hostfwd_remove(domain: Any, forward: Forward, *, netdev_id: str = USER_NETDEV_ID) -> None:
    import libvirt_qemu

    rule = f"{forward.proto}:{forward.host_addr}:{forward.host_port}"
    reply = libvirt_qemu.qemuMonitorCommand(
        domain, f"hostfwd_remove {netdev_id} {rule}",
        libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP,
    )  # fmt: skip
    if "invalid" in reply.lower() or "could not" in reply.lower():
        raise BuildError(f"could not remove port forward {rule}: {reply.strip()}")


def pick_address(
    interfaces: Mapping[str, Mapping[str, Any]] | None, mac: str, *, ipv6: bool = False
) -> str | None:
    """The guest's address for `mac` from libvirt's `interfaceAddresses()` result.

    The result maps an interface name to {'hwaddr': mac, 'addrs': [{'type', 'addr',
    'prefix'}]}, where type is VIR_IP_ADDR_TYPE_IPV4 (0) or _IPV6 (1). Loopback
    and link-local addresses are skipped.
    """
    wanted = 1 if ipv6 else 0
    for info in (interfaces or {}).values():
        if (info.get("hwaddr") or "").lower() != mac.lower():
            continue
        for entry in info.get("addrs") or []:
            if entry.get("type") != wanted or not entry.get("addr"):
                continue
            address = ipaddress.ip_address(entry["addr"])
            if address.is_loopback or address.is_link_local:
                continue
            return str(address)
    return None


def guest_address(
    domain: Any, mac: str, *, sources: Sequence[str] = ("lease", "agent")
) -> str | None:
    """Ask libvirt for the guest's IPv4 address: DHCP leases first, then the guest agent."""
    import libvirt

    flags = {
        "lease": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
        "agent": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
        "arp": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
    }
    for source in sources:
        try:
            found = pick_address(domain.interfaceAddresses(flags[source]), mac)
        except libvirt.libvirtError:  # no agent yet, network without leases
            continue
        if found:
            return found
    return None
