"""Domain XML, parsed back with ElementTree."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from vmbuild.vm.accel import KVM, tcg
from vmbuild.vm.domain import QEMU_NS, DomainSpec, Uefi, domain_xml
from vmbuild.vm.network import USER_NIC_SLOT, LibvirtNetwork, UserNetwork

Q = f"{{{QEMU_NS}}}"


def _spec(**kw) -> DomainSpec:
    base = dict(
        name="vmbuild-b1-build",
        disk=Path("/work/b1/overlay.qcow2"),
        accel=tcg(),
        console_log=Path("/work/b1/console.log"),
        network=UserNetwork.with_ssh(40022, mac="52:54:00:12:34:56"),
        seed=Path("/work/b1/seed.iso"),
        run_as_root=True,
    )
    return DomainSpec(**{**base, **kw})


def _parse(spec: DomainSpec) -> ET.Element:
    return ET.fromstring(domain_xml(spec))


def _slots(root: ET.Element) -> list[int]:
    return [int(a.get("slot"), 16) for a in root.iter("address") if a.get("type") == "pci"]


def test_disks_overlay_and_read_only_virtio_seed() -> None:
    root = _parse(_spec())
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "vmbuild-b1-build"
    disks = root.findall("devices/disk")
    system, seed = disks
    assert system.find("source").get("file") == "/work/b1/overlay.qcow2"
    assert system.find("driver").get("type") == "qcow2"
    assert system.find("readonly") is None
    assert seed.get("device") == "disk", "the seed is a disk, not a CD-ROM"
    assert seed.find("source").get("file") == "/work/b1/seed.iso"
    assert seed.find("target").get("bus") == "virtio"
    assert seed.find("driver").get("type") == "raw"
    assert seed.find("readonly") is not None


def test_user_network_hostfwd_on_loopback_with_explicit_slot() -> None:
    root = _parse(_spec())
    args = [a.get("value") for a in root.find(f"{Q}commandline").findall(f"{Q}arg")]
    netdev = args[args.index("-netdev") + 1]
    device = args[args.index("-device") + 1]
    assert "hostfwd=tcp:127.0.0.1:40022-:22" in netdev
    assert f"addr={USER_NIC_SLOT:#x}" in device and "mac=52:54:00:12:34:56" in device
    assert device.endswith(",romfile="), "no option ROM: the VMs boot from disk"
    assert root.find("devices/interface") is None
    slots = _slots(root)
    assert len(slots) == len(set(slots)) and USER_NIC_SLOT not in slots


def test_serial_console_logged_to_file() -> None:
    root = _parse(_spec())
    serial = root.find("devices/serial")
    assert serial.find("log").get("file") == "/work/b1/console.log"
    assert serial.find("log").get("append") == "off"


def test_seclabel_only_when_running_as_root() -> None:
    label = _parse(_spec()).find("seclabel")
    assert (label.get("type"), label.get("model"), label.get("relabel")) == ("static", "dac", "no")
    assert label.findtext("label") == "+0:+0"
    assert _parse(_spec(run_as_root=False)).find("seclabel") is None


def test_cpu_follows_accelerator() -> None:
    default = _parse(_spec()).find("cpu")
    assert default.get("mode") == "custom" and default.findtext("model") == "Nehalem"
    assert _parse(_spec(accel=tcg("max"))).find("cpu").get("mode") == "maximum"
    kvm = _parse(_spec(accel=KVM))
    assert kvm.get("type") == "kvm" and kvm.find("cpu").get("mode") == "host-passthrough"
    custom = _parse(_spec(accel=tcg("qemu64")))
    assert custom.find("cpu").get("mode") == "custom"
    assert custom.findtext("cpu/model") == "qemu64"


def test_uefi_loader_and_nvram() -> None:
    assert _parse(_spec()).find("os/loader") is None
    root = _parse(_spec(uefi=Uefi(nvram=Path("/work/b1/nvram.fd"))))
    loader = root.find("os/loader")
    assert loader.get("type") == "pflash" and loader.get("readonly") == "yes"
    assert loader.text.endswith("OVMF_CODE_4M.fd")
    assert root.find("os/nvram").text == "/work/b1/nvram.fd"
    assert root.find("os/nvram").get("template").endswith("OVMF_VARS_4M.fd")


def test_libvirt_network_mode() -> None:
    root = _parse(_spec(network=LibvirtNetwork("default", "52:54:00:aa:bb:cc")))
    assert root.find(f"{Q}commandline") is None
    iface = root.find("devices/interface")
    assert iface.get("type") == "network"
    assert iface.find("source").get("network") == "default"
    assert iface.find("mac").get("address") == "52:54:00:aa:bb:cc"
    assert iface.find("model").get("type") == "virtio"
    assert iface.find("rom").get("enabled") == "no"
    channel = root.find("devices/channel")
    assert channel.find("target").get("name") == "org.qemu.guest_agent.0"
    slots = _slots(root)
    assert len(slots) == len(set(slots))


def test_extra_disks_get_their_own_slots() -> None:
    root = _parse(_spec(extra_disks=(Path("/w/a.qcow2"), Path("/w/b.qcow2"))))
    targets = [d.find("target").get("dev") for d in root.findall("devices/disk")]
    assert targets == ["vda", "vdb", "vdc", "vdd"]
    slots = _slots(root)
    assert len(slots) == len(set(slots))


def test_machine_type_and_root_bus_follow_the_recipe(tmp_path: Path) -> None:
    """q35 puts the machine type in the XML and the user-mode NIC on pcie.0; libvirt and
    QEMU accept the domain (started on a blank disk, then destroyed)."""
    import libvirt

    from vmbuild import disk

    assert _parse(_spec()).find("os/type").get("machine") == "pc"
    image = disk.create(tmp_path / "blank.qcow2", "64M")
    network = UserNetwork.with_ssh(0, mac="52:54:00:12:34:57")
    network = UserNetwork(network.forwards, network.mac, pci_bus="pcie.0")
    spec = _spec(name=f"vmbuild-unit-q35-{tmp_path.name[-8:]}", machine="q35", disk=image,
                 seed=None, network=network, console_log=tmp_path / "console.log",
                 memory_mib=256, vcpus=1)  # fmt: skip
    root = _parse(spec)
    assert root.find("os/type").get("machine") == "q35"
    args = [a.get("value") for a in root.iter(f"{Q}arg")]
    assert any("bus=pcie.0" in a for a in args)
    conn = libvirt.open("qemu:///system")
    try:
        domain = conn.createXML(domain_xml(spec), 0)
        assert "q35" in domain.XMLDesc()
        domain.destroy()
    finally:
        conn.close()
