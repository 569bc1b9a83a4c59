"""VM lifecycle against real libvirt and QEMU, without booting an OS.

The disk is a blank 64 MiB qcow2: QEMU starts, SeaBIOS finds nothing to boot, and
the domain, its port forwards and its cleanup can be checked in a second or two.
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from vmbuild import disk
from vmbuild.errors import BuildError, InputError
from vmbuild.vm import machine as machine_mod
from vmbuild.vm.machine import (
    BootStalled,
    ReadyTimeouts,
    VMSpec,
    domain_name,
    launch,
    leftover_domains,
    remove_leftovers,
)


@pytest.fixture
def build_id() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def spec(tmp_path: Path, build_id: str) -> VMSpec:
    blank = disk.create(tmp_path / "blank.qcow2", "64M")
    return VMSpec(
        build_id=build_id, role="unit", disk=blank, workdir=tmp_path / "work",
        console_log=tmp_path / "console.log", accelerator="tcg", memory_mib=128, vcpus=1,
    )  # fmt: skip


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_launch_runs_and_removes_the_domain(spec: VMSpec, build_id: str) -> None:
    name = domain_name(build_id, "unit")
    with launch(spec) as vm:
        assert vm.name == name
        assert leftover_domains(prefix=name) == [name]
        assert vm.is_running()
        vm.check_alive()
        assert _listening(vm.ssh_port), "QEMU forwards the SSH port on 127.0.0.1"
        assert (vm.files / "seed.iso").exists()
        assert vm.known_hosts.read_text().startswith(f"[127.0.0.1]:{vm.ssh_port} ssh-ed25519 ")
        assert vm.ssh_command().endswith("build@127.0.0.1")
        extra = vm.add_forward(8080)
        assert extra != vm.ssh_port and _listening(extra), "hostfwd_add through the monitor"
        files = vm.files
    assert leftover_domains(prefix=name) == []
    assert not files.exists(), "per-VM files (keys, seed) removed"


def test_error_inside_destroys_the_domain(spec: VMSpec, build_id: str) -> None:
    with pytest.raises(RuntimeError, match="boom"), launch(spec):
        raise RuntimeError("boom")
    assert leftover_domains(prefix=domain_name(build_id, "unit")) == []


def test_keep_on_error_keeps_it_and_remove_leftovers_clears_it(spec: VMSpec, build_id: str) -> None:
    name = domain_name(build_id, "unit")
    with pytest.raises(RuntimeError), launch(replace(spec, keep_on_error=True)) as vm:
        raise RuntimeError("keep me")
    assert leftover_domains(prefix=name) == [name]
    assert vm.key.private_path.exists(), "the key stays for `ssh` into the kept VM"
    assert remove_leftovers(prefix=name) == [name]
    assert leftover_domains(prefix=name) == []


def test_death_is_detected(spec: VMSpec) -> None:
    with launch(spec) as vm:
        vm.destroy()
        with pytest.raises(BuildError, match="QEMU exited"):
            vm.check_alive()


def test_port_taken_before_qemu_binds_is_retried(
    spec: VMSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real = machine_mod.free_port
        monkeypatch.setattr(machine_mod, "free_port", lambda: next(ports, None) or real())
        with launch(spec) as vm:
            assert vm.ssh_port != busy and vm.is_running()


def test_bad_input(spec: VMSpec, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="VM disk not found"):
        launch(replace(spec, disk=tmp_path / "missing.qcow2")).__enter__()
    with pytest.raises(InputError, match="network.mode"):
        launch(replace(spec, network={"mode": "bridge"})).__enter__()
    with pytest.raises(InputError, match="refusing"):
        remove_leftovers(prefix="important-")


def test_same_name_twice_is_refused_without_touching_the_first(spec: VMSpec) -> None:
    from vmbuild.vm.machine import DomainExists

    with launch(spec) as first:
        with pytest.raises(DomainExists, match="already exists"):
            launch(replace(spec, workdir=spec.workdir / "second")).__enter__()
        assert first.is_running(), "the running VM of that name is left alone"


def test_uefi_domain_starts_with_its_own_nvram(spec: VMSpec) -> None:
    with launch(replace(spec, uefi=True, memory_mib=256)) as vm:
        assert vm.is_running()
        xml = vm.domain.XMLDesc()
        assert "OVMF_CODE_4M.fd" in xml
        nvram = vm.files / "nvram.fd"
        assert nvram.exists() and nvram.stat().st_size > 0, "copied from the OVMF template"


def test_power_cycle_starts_a_fresh_qemu_with_the_same_forwards(spec: VMSpec) -> None:
    with launch(spec) as vm:
        extra = vm.add_forward(8080)
        vm.destroy()
        assert not vm.is_running()
        vm._recreate()
        assert vm.is_running()
        assert _listening(vm.ssh_port) and _listening(extra), "SSH and added forwards are back"
        assert vm.known_hosts.read_text().startswith(f"[127.0.0.1]:{vm.ssh_port} ")
    assert leftover_domains(prefix=vm.name) == []


def stalling_disk(path: Path) -> Path:
    """A qcow2 whose boot sector writes a line to COM1 and then spins forever: a guest
    that starts, then stops making progress (as TCG guests at times do in early boot)."""
    message = b"vmbuild stall test\r\n\x00"
    code = bytes([
        0x31, 0xC0,              # xor ax, ax
        0x8E, 0xD8,              # mov ds, ax
        0xBA, 0xF8, 0x03,        # mov dx, 0x3f8 (COM1)
        0xBE, 0x14, 0x7C,        # mov si, 0x7c14 (the message, after this code)
        0xAC,                    # lodsb
        0x84, 0xC0,              # test al, al
        0x74, 0x03,              # jz spin
        0xEE,                    # out dx, al
        0xEB, 0xF8,              # jmp lodsb
        0xEB, 0xFE,              # spin: jmp spin
    ])  # fmt: skip
    assert len(code) == 0x14
    raw = path.with_suffix(".raw")
    # SeaBIOS does not boot a virtio disk of one sector: pad it to 1 MiB.
    raw.write_bytes(((code + message).ljust(510, b"\0") + b"\x55\xaa").ljust(1 << 20, b"\0"))
    disk.convert(raw, path, "qcow2")
    return path


def test_a_boot_that_stops_writing_to_the_console_is_reported_as_stalled(
    spec: VMSpec, tmp_path: Path
) -> None:
    stalling = replace(spec, disk=stalling_disk(tmp_path / "stall.qcow2"))
    with launch(stalling) as vm:
        start = time.monotonic()
        with pytest.raises(BootStalled, match="stopped making progress") as caught:
            vm.wait_ready(ReadyTimeouts(banner=45 / vm.scale(1.0), silence=2 / vm.scale(1.0)))
        assert time.monotonic() - start < 60, "long before the banner timeout"
        assert "vmbuild stall test" in caught.value.message, "the console tail is shown"


def test_a_guest_that_never_writes_to_the_console_is_not_judged(spec: VMSpec) -> None:
    with launch(spec) as vm:  # the blank disk: SeaBIOS finds nothing and writes nothing
        time.sleep(1.5)
        vm.check_booting(1.0)


def test_a_stalled_boot_is_tried_once_more_on_a_fresh_disk(tmp_path: Path, build_id: str) -> None:
    from vmbuild import events
    from vmbuild.build import BuildContext, BuildOptions
    from vmbuild.config import Recipe
    from vmbuild.stages.guest import RunningVM
    from vmbuild.vm import accel

    recipe = Recipe.from_dict({
        "name": "stall", "version": "1.0.0", "parent": {"path": str(tmp_path / "p.qcow2")},
        "vm": {"cpus": 1, "memory": 256, "accelerator": "tcg"},
        "timeouts": {"boot": 2, "ssh": 45},
    })  # fmt: skip
    ctx = BuildContext(recipe, BuildOptions(), build_id, tmp_path / "build")
    ctx.accel = accel.tcg()
    disks: list[Path] = []

    def fresh_disk() -> Path:
        disks.append(stalling_disk(tmp_path / f"stall-{len(disks)}.qcow2"))
        return disks[-1]

    seen: list[events.Event] = []
    unsubscribe = events.subscribe(seen.append)
    try:
        with pytest.raises(BootStalled, match="stopped making progress"):
            RunningVM.boot_ready(ctx, "test", fresh_disk)
    finally:
        unsubscribe()
    assert len(disks) == 2, "the second boot gets a disk of its own"
    warnings = [e.message for e in seen if e.kind == "warning"]
    assert len(warnings) == 1 and "booting it again on a fresh disk" in warnings[0]
    kept = ctx.logs / "console-test-stalled.log"
    assert kept.read_bytes().startswith(b"vmbuild stall test"), "the first boot's console"
    assert leftover_domains(prefix=domain_name(build_id, "test")) == []
