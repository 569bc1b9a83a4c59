"""libvirt domain XML for build and test VMs.

Layout (machine type `pc`): the system disk (the caller's qcow2 overlay) and the
NoCloud seed (a read-only raw virtio disk) on fixed PCI slots, a virtio RNG so
sshd does not wait for entropy, no video, the serial console on a pty whose
output virtlogd copies to the log file the caller names (so `virsh console`
still works on a kept VM).

Every PCI device gets an explicit slot: the user-mode NIC is added through
`<qemu:commandline>` (libvirt 9.0 has no port-forward element for it) and must
not collide with a slot libvirt would pick on its own.

Permissions: libvirt's system instance runs QEMU as `libvirt-qemu`, which cannot
read images under /root or a user's work dir. When vmbuild runs as root against
a system URI, each domain carries a static DAC seclabel `+0:+0` with
`relabel='no'`: QEMU runs as root for that domain only and nothing on disk is
chowned, so the host's qemu.conf stays untouched and the caller's files keep
their owner. Unprivileged callers use `qemu:///session` (QEMU runs as the
caller) and need no seclabel.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from vmbuild.vm.accel import Accelerator
from vmbuild.vm.network import LibvirtNetwork, UserNetwork

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)

# Fixed PCI slots (bus 0). 0 host bridge, 1 PIIX3; libvirt-managed devices below
# 0x10, the command-line NIC at network.USER_NIC_SLOT.
SLOT_DISK = 0x04
SLOT_SEED = 0x05
SLOT_RNG = 0x06
SLOT_NIC = 0x07  # libvirt-network NIC
SLOT_SERIAL = 0x08  # virtio-serial for the guest agent channel
SLOT_EXTRA_DISK = 0x09  # further disks: 0x09, 0x0a, ...

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


@dataclass(frozen=True)
class Uefi:
    """UEFI firmware: read-only code plus a per-VM copy of the variable store."""

    nvram: Path
    loader: Path = OVMF_CODE
    template: Path = OVMF_VARS


@dataclass(frozen=True)
class DomainSpec:
    name: str
    disk: Path
    accel: Accelerator
    console_log: Path
    network: UserNetwork | LibvirtNetwork
    seed: Path | None = None
    disk_format: str = "qcow2"
    memory_mib: int = 2048
    vcpus: int = 2
    uefi: Uefi | None = None
    run_as_root: bool = False  # static DAC seclabel +0:+0 (see module docstring)
    extra_disks: tuple[Path, ...] = ()
    description: str = ""
    machine: str = "pc"  # pc (i440fx) or q35; devices sit on the root bus of either
    metadata: dict[str, str] = field(default_factory=dict)


def wants_root_seclabel(uri: str) -> bool:
    """Root against a system instance: run this domain's QEMU as root, no relabeling."""
    return os.geteuid() == 0 and "/system" in uri


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    elem = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        elem.text = text
    return elem


def pci_address(parent: ET.Element, slot: int) -> ET.Element:
    return _sub(parent, "address", type="pci", domain="0x0000", bus="0x00",
                slot=f"{slot:#04x}", function="0x0")  # fmt: skip


def _disk(
    devices: ET.Element, path: Path, fmt: str, dev: str, slot: int, *, readonly: bool
) -> None:
    disk = _sub(devices, "disk", type="file", device="disk")
    driver = {"name": "qemu", "type": fmt, "discard": "unmap"}
    _sub(disk, "driver", **driver)
    _sub(disk, "source", file=str(path))
    _sub(disk, "target", dev=dev, bus="virtio")
    if readonly:
        _sub(disk, "readonly")
    pci_address(disk, slot)


def domain_xml(spec: DomainSpec) -> str:
    """The domain XML for `spec` (transient or persistent alike)."""
    root = ET.Element("domain", {"type": spec.accel.domain_type})
    _sub(root, "name", spec.name)
    if spec.description:
        _sub(root, "description", spec.description)
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(spec.vcpus))

    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=spec.machine)
    if spec.uefi:
        _sub(os_el, "loader", str(spec.uefi.loader), readonly="yes", type="pflash")
        _sub(os_el, "nvram", str(spec.uefi.nvram), template=str(spec.uefi.template))
    _sub(os_el, "boot", dev="hd")

    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    cpu = _sub(root, "cpu", mode=spec.accel.cpu_mode)
    if spec.accel.cpu_model:
        cpu.set("match", "exact")
        _sub(cpu, "model", spec.accel.cpu_model, fallback="allow")
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")

    devices = _sub(root, "devices")
    _disk(devices, spec.disk, spec.disk_format, "vda", SLOT_DISK, readonly=False)
    if spec.seed is not None:
        _disk(devices, spec.seed, "raw", "vdb", SLOT_SEED, readonly=True)
    for index, extra in enumerate(spec.extra_disks):
        dev = "vd" + chr(ord("c") + index)
        _disk(devices, extra, "qcow2", dev, SLOT_EXTRA_DISK + index, readonly=False)

    _sub(devices, "controller", type="usb", model="none")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    pci_address(rng, SLOT_RNG)
    _sub(devices, "memballoon", model="none")
    video = _sub(devices, "video")
    _sub(video, "model", type="none")

    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=str(spec.console_log), append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")

    if isinstance(spec.network, LibvirtNetwork):
        spec.network.add_interface(devices, SLOT_NIC)
        ctrl = _sub(devices, "controller", type="virtio-serial", index="0")
        pci_address(ctrl, SLOT_SERIAL)
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")

    if spec.run_as_root:
        label = _sub(root, "seclabel", type="static", model="dac", relabel="no")
        _sub(label, "label", "+0:+0")

    if isinstance(spec.network, UserNetwork):
        commandline = ET.SubElement(root, f"{{{QEMU_NS}}}commandline")
        for arg in spec.network.qemu_args():
            ET.SubElement(commandline, f"{{{QEMU_NS}}}arg", {"value": arg})

    ET.indent(root)
    return ET.tostring(root, encoding="unicode")
