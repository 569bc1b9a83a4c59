"""Accelerator choice: KVM only where it really runs a guest, otherwise TCG.

`/dev/kvm` existing proves little: on some hosts `KVM_CREATE_VM` succeeds but a
guest hangs, or QEMU aborts on an MSR with `-cpu host`. So `probe_kvm` boots a
512-byte boot sector under `-accel kvm -cpu host` that writes one byte to
QEMU's isa-debug-exit port (QEMU then exits with a known status) and gives it a
few seconds. The answer is cached per boot of the host (keyed by
/proc/sys/kernel/random/boot_id and the QEMU binary), so builds do not repeat it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from vmbuild import events
from vmbuild.errors import CommandError, InputError
from vmbuild.fsutil import cache_key, write_json
from vmbuild.paths import cache_dir
from vmbuild.proc import run

QEMU = "qemu-system-x86_64"
KVM_DEVICE = Path("/dev/kvm")
PROBE_TIMEOUT = 5.0
# isa-debug-exit makes QEMU exit with (value << 1) | 1; value 0x31 gives 99.
_EXIT_PORT = 0xF4
_EXIT_VALUE = 0x31
PROBE_EXIT_STATUS = (_EXIT_VALUE << 1) | 1
# TCG is slower by a roughly constant factor; timeouts scale with it.
TCG_TIMEOUT_FACTOR = 4.0
# The TCG CPU model. `max` exposes ERMS and AVX2: the guest kernel then clears pages
# with `rep stosb`, which TCG runs byte by byte; on these hosts both reboots under `max`
# stalled in clear_page_erms (soft lockups). Nehalem is the x86-64-v2 baseline (RHEL 9
# needs v2, qemu64 is v1) without ERMS or AVX. benchmarks/vm_boot.py compares models.
TCG_CPU_MODEL = "Nehalem"
CHOICES = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class Accelerator:
    """What a VM runs on: libvirt domain type, CPU mode/model and the timeout factor."""

    name: str  # "kvm" or "tcg"
    cpu_mode: str  # libvirt <cpu mode=...>: host-passthrough, maximum or custom
    cpu_model: str | None  # with cpu_mode custom
    timeout_factor: float

    @property
    def domain_type(self) -> str:
        return "kvm" if self.name == "kvm" else "qemu"

    def scale(self, seconds: float) -> float:
        """A timeout measured under KVM, stretched for this accelerator."""
        return seconds * self.timeout_factor


KVM = Accelerator("kvm", "host-passthrough", None, 1.0)


def tcg(cpu_model: str = TCG_CPU_MODEL) -> Accelerator:
    if cpu_model == "max":
        return Accelerator("tcg", "maximum", None, TCG_TIMEOUT_FACTOR)
    return Accelerator("tcg", "custom", cpu_model, TCG_TIMEOUT_FACTOR)


def boot_sector() -> bytes:
    """Real-mode code: `mov al, 0x31; out 0xf4, al; hlt; jmp $-1`, signed 0x55AA."""
    code = bytes([0xB0, _EXIT_VALUE, 0xE6, _EXIT_PORT, 0xF4, 0xEB, 0xFD])
    return code + bytes(510 - len(code)) + b"\x55\xaa"


def probe(accel: str = "kvm", *, timeout: float = PROBE_TIMEOUT, qemu: str = QEMU) -> bool:
    """True when QEMU with `-accel accel` runs the probe boot sector within `timeout`."""
    with tempfile.TemporaryDirectory(prefix="vmbuild-accel-") as tmp:
        image = Path(tmp) / "probe.img"
        image.write_bytes(boot_sector())
        argv = [
            qemu, "-accel", accel, "-machine", "pc", "-m", "16", "-nodefaults",
            "-display", "none", "-serial", "none", "-monitor", "none", "-no-reboot",
            "-device", f"isa-debug-exit,iobase={_EXIT_PORT:#x},iosize=0x01",
            "-drive", f"file={image},format=raw,if=ide,index=0,media=disk",
        ]  # fmt: skip
        if accel == "kvm":
            argv += ["-cpu", "host"]  # the model build VMs use; some hosts abort on its MSRs
        try:
            proc = run(argv, check=False, timeout=timeout)
        except CommandError:  # timed out: the guest hangs
            return False
        return proc.returncode == PROBE_EXIT_STATUS


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _cache_file(qemu: str) -> Path:
    binary = shutil.which(qemu) or qemu
    try:
        stamp = os.stat(binary).st_mtime_ns
    except OSError:
        stamp = 0
    key = cache_key({"boot_id": _boot_id(), "qemu": binary, "mtime": stamp, "probe": 1})
    return cache_dir("accel") / f"kvm-{key[:24]}.json"


def kvm_works(*, qemu: str = QEMU, use_cache: bool = True) -> bool:
    """Whether KVM really runs guests here; probed once per host boot."""
    if not KVM_DEVICE.exists() or not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return False
    cached = _cache_file(qemu)
    if use_cache and cached.exists():
        try:
            return bool(json.loads(cached.read_text())["kvm"])
        except (OSError, ValueError, KeyError):
            pass
    works = probe("kvm", qemu=qemu)
    write_json(cached, {"kvm": works, "boot_id": _boot_id()})
    return works


def select(requested: str | None = "auto", *, tcg_cpu: str = TCG_CPU_MODEL) -> Accelerator:
    """The accelerator for a build: `auto` probes; `kvm` or `tcg` force one."""
    requested = (requested or "auto").lower()
    if requested not in CHOICES:
        raise InputError(
            f"accelerator: unknown value {requested!r}", hint=f"use one of {', '.join(CHOICES)}"
        )
    if requested == "tcg":
        return tcg(tcg_cpu)
    if requested == "kvm":
        if not KVM_DEVICE.exists():
            raise InputError(
                "accelerator: kvm was asked for but this host has no /dev/kvm",
                hint="enable virtualization (VT-x/AMD-V, nested virt) or use accelerator: tcg",
            )
        return KVM
    if kvm_works():
        return KVM
    if KVM_DEVICE.exists():
        events.warn("KVM is present but a probe guest did not run under it; using TCG (slower)")
    else:
        events.warn("no /dev/kvm on this host; using TCG (slower)")
    return tcg(tcg_cpu)


def describe(accel: Accelerator) -> dict[str, object]:
    return asdict(accel)
