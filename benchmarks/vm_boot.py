"""Boot-to-SSH and boot-to-cloud-init of the base image under TCG, per CPU model.

Each round boots the cached Debian 12 base image (an overlay of it) through
`vmbuild.vm.launch` once per CPU model and records when sshd answered, when the
SSH login with the pinned host key succeeded and when `cloud-init status --wait`
returned, plus the host's load average. Results go to benchmarks/results/vm_boot.json.

    .venv/bin/python benchmarks/vm_boot.py [--cpu max --cpu Nehalem --cpu qemu64] [--rounds 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

from vmbuild import disk
from vmbuild.bootstrap import ensure_image
from vmbuild.fsutil import write_json
from vmbuild.vm import VMSpec, launch
from vmbuild.vm.accel import tcg

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "vm_boot.json"
DEFINITION = ROOT / "images" / "base" / "debian-12.yml"


def boot_once(base: Path, cpu: str, work: Path) -> dict[str, object]:
    overlay = disk.overlay(base, work / f"{cpu}-{uuid.uuid4().hex[:6]}.qcow2")
    spec = VMSpec(
        build_id=f"bench-{uuid.uuid4().hex[:8]}", role=f"boot-{cpu}", disk=overlay,
        workdir=work, console_log=work / f"console-{cpu}.log", accelerator=tcg(cpu),
        memory_mib=1024, vcpus=2,
    )  # fmt: skip
    load_start = os.getloadavg()[0]
    with launch(spec) as vm, vm.wait_ready() as ssh:
        kernel = ssh.run("systemd-analyze || true", timeout=120).stdout.strip()
        result = {
            "cpu": cpu,
            "boot_to_ssh_s": round(vm.ssh_seconds or 0, 1),
            "boot_to_cloud_init_done_s": round(vm.cloud_init_seconds or 0, 1),
            "systemd_analyze": kernel.splitlines()[0] if kernel else "",
            "load_avg_start": round(load_start, 2),
            "load_avg_end": round(os.getloadavg()[0], 2),
        }
        t = time.monotonic()
        result["clean_shutdown"] = vm.shutdown()
        result["shutdown_s"] = round(time.monotonic() - t, 1)
    overlay.unlink(missing_ok=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="append", help="TCG CPU model (repeatable)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    cpus = args.cpu or ["max", "Nehalem", "qemu64"]
    base = ensure_image(DEFINITION)
    runs = []
    with tempfile.TemporaryDirectory(prefix="vmbuild-bench-boot-") as tmp:
        for _ in range(args.rounds):
            for cpu in cpus:  # interleaved, so load drifts hit every model alike
                runs.append(boot_once(base, cpu, Path(tmp)))
    write_json(
        RESULTS,
        {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "host": {"cores": os.cpu_count(), "kernel": platform.release()},
            "accelerator": "tcg",
            "runs": runs,
        },
    )
    print(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
