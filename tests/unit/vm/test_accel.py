"""Accelerator probe and selection (a real QEMU runs the probe boot sector)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmbuild.errors import InputError
from vmbuild.vm import accel


def test_boot_sector_shape() -> None:
    sector = accel.boot_sector()
    assert len(sector) == 512 and sector.endswith(b"\x55\xaa")


def test_probe_under_tcg_runs_the_boot_sector() -> None:
    assert accel.probe("tcg") is True


def test_probe_gives_a_definite_answer_for_kvm() -> None:
    # Here /dev/kvm exists but guests hang or QEMU aborts: the probe must end either way.
    assert accel.probe("kvm", timeout=5) in (True, False)


def test_probe_of_a_broken_qemu_is_false() -> None:
    assert accel.probe("tcg", qemu="/bin/false") is False


def test_kvm_works_is_cached_per_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path))
    first = accel.kvm_works()
    cached = list((tmp_path / "accel").glob("kvm-*.json")) if accel.KVM_DEVICE.exists() else []
    assert accel.kvm_works() == first
    if accel.KVM_DEVICE.exists():
        assert len(cached) == 1


def test_select_forced_and_invalid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    chosen = accel.select("tcg")
    assert chosen.name == "tcg" and chosen.domain_type == "qemu" and chosen.timeout_factor > 1
    assert accel.select("tcg", tcg_cpu="qemu64").cpu_model == "qemu64"
    assert chosen.scale(10) == 10 * chosen.timeout_factor
    with pytest.raises(InputError, match="accelerator: unknown value 'hvf'"):
        accel.select("hvf")
    monkeypatch.setattr(accel, "KVM_DEVICE", tmp_path / "no-kvm")
    with pytest.raises(InputError, match="no /dev/kvm"):
        accel.select("kvm")
    assert accel.select("auto").name == "tcg"


def test_auto_warns_when_falling_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vmbuild import events

    seen: list[events.Event] = []
    unsubscribe = events.subscribe(seen.append)
    monkeypatch.setattr(accel, "KVM_DEVICE", tmp_path / "no-kvm")
    try:
        assert accel.select("auto").name == "tcg"
    finally:
        unsubscribe()
    assert any(e.kind == "warning" and "TCG" in e.message for e in seen)
