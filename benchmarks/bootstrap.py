"""Base-image bootstrap: a cold build, a cached lookup, and boot-to-SSH under TCG.

The cold build runs `vmbuild --json bootstrap --force` in a private cache (its
`bootstrap/packages` download cache linked from yours, so the figure is debootstrap,
configuration and disk assembly, not downloads). Each boot runs
`qemu-system-x86_64 -accel tcg` directly on an overlay of the cached image, with a
NoCloud seed as a read-only virtio disk and SSH forwarded on 127.0.0.1; it is timed
until SSH answers and until `cloud-init status --wait` returns. QEMU's own CPU
seconds are recorded too: on a loaded host they inflate less than wall time.
Results: benchmarks/results/bootstrap.json.

    .venv/bin/python benchmarks/bootstrap.py [--boots 2] [--skip-build]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline_stages import finish_machine_info, log, machine_info

from vmbuild import disk
from vmbuild.bootstrap import ensure_image, read_meta
from vmbuild.fsutil import write_json
from vmbuild.netutil import free_port
from vmbuild.paths import cache_dir
from vmbuild.proc import run
from vmbuild.seed import write_iso
from vmbuild.signals import interruptible

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bootstrap.json"
DEFINITION = ROOT / "images" / "base" / "debian-12.yml"
BOOT_TIMEOUT = 15 * 60


def cold_build(definition: Path) -> dict[str, Any]:
    """`vmbuild bootstrap --force` in a private cache; its meta.json figures."""
    private = Path(tempfile.mkdtemp(prefix="vmbuild-bench-bootstrap-"))
    try:
        (private / "bootstrap").mkdir()
        packages = cache_dir("bootstrap") / "packages"
        packages.mkdir(exist_ok=True)
        (private / "bootstrap" / "packages").symlink_to(packages, target_is_directory=True)
        env = {**os.environ, "VMBUILD_CACHE": str(private)}
        argv = [sys.executable, "-m", "vmbuild.cli", "--json", "bootstrap", "--force"]
        start = time.monotonic()
        proc = subprocess.run([*argv, str(definition)], env=env, capture_output=True, text=True)
        seconds = round(time.monotonic() - start, 1)
        if proc.returncode != 0:
            raise RuntimeError(f"bootstrap failed:\n{proc.stderr[-2000:]}")
        stages, image = {}, None
        for line in proc.stdout.splitlines():
            event = json.loads(line)
            if event["kind"] == "stage-end":
                stages[event["stage"]] = event["data"]["seconds"]
            if event["kind"] == "result":
                image = Path(event["data"]["path"])
        meta = (read_meta(image) if image else None) or {}
        return {
            "seconds": seconds,
            "stages": stages,
            "image_bytes": meta.get("file_size"),
            "root_tree_bytes": meta.get("root_tree_bytes"),
        }
    finally:
        shutil.rmtree(private, ignore_errors=True)


def cached_lookup(definition: Path) -> float:
    start = time.monotonic()
    ensure_image(definition)
    return round(time.monotonic() - start, 3)


def _qemu_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _qemu(argv: list[str], console: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def boot_once(image: Path, work: Path, index: int) -> dict[str, Any]:
    """Boot an overlay of `image`; seconds until SSH answers and cloud-init is done."""
    key = work / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    public = key.with_suffix(".pub").read_text().strip()
    user_data = (
        "#cloud-config\nusers:\n  - name: bench\n    sudo: ALL=(ALL) NOPASSWD:ALL\n"
        f"    shell: /bin/bash\n    ssh_authorized_keys: [{public}]\n"
    )
    meta_data = f"instance-id: bench-{os.getpid()}-{index}\nlocal-hostname: bench\n"
    seed = write_iso(
        work / "seed.iso", {"user-data": user_data.encode(), "meta-data": meta_data.encode()}
    )
    overlay = work / f"overlay-{index}.qcow2"
    disk.overlay(image, overlay, size=8 << 30)  # larger than the image: growpart runs
    port = free_port()
    console = work / f"console-{index}.log"
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2",
        "-nographic", "-nodefaults", "-serial", f"file:{console}",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
    ]  # fmt: skip
    ssh = [
        "ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=10", "bench@127.0.0.1",
    ]  # fmt: skip
    result: dict[str, Any] = {"load_average_start": [round(x, 2) for x in os.getloadavg()]}
    start = time.monotonic()
    with _qemu(argv, console) as qemu:
        while True:
            if qemu.poll() is not None:
                raise RuntimeError(f"qemu exited {qemu.returncode}; console: {console}")
            if time.monotonic() - start > BOOT_TIMEOUT:
                raise RuntimeError(f"no SSH after {BOOT_TIMEOUT}s; console: {console}")
            if run([*ssh, "true"], check=False, timeout=60).returncode == 0:
                break
            time.sleep(1)
        result["ssh_seconds"] = round(time.monotonic() - start, 1)
        result["ssh_qemu_cpu_seconds"] = round(_qemu_cpu_seconds(qemu.pid), 1)
        status = run([*ssh, "cloud-init status --wait"], check=False, timeout=BOOT_TIMEOUT)
        result["cloud_init_done_seconds"] = round(time.monotonic() - start, 1)
        result["cloud_init_done_qemu_cpu_seconds"] = round(_qemu_cpu_seconds(qemu.pid), 1)
        result["cloud_init_status"] = status.stdout.strip().splitlines()[-1:]
        blame = run([*ssh, "systemd-analyze; systemd-analyze blame | head -8"], check=False)
        result["systemd_analyze"] = blame.stdout.strip().splitlines()
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    overlay.unlink()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--definition", type=Path, default=DEFINITION)
    parser.add_argument("--boots", type=int, default=2, help="boots of the cached image")
    parser.add_argument("--skip-build", action="store_true", help="no cold build")
    args = parser.parse_args()
    definition = args.definition.resolve()
    results: dict[str, Any] = {"machine": machine_info(), "definition": str(definition)}
    with interruptible():
        image = ensure_image(definition)
        results["image"] = {"path": str(image), **disk.info(image).raw}
        results["cached_lookup_seconds"] = cached_lookup(definition)
        if not args.skip_build:
            log("cold bootstrap build (private cache)")
            results["cold_build"] = cold_build(definition)
        work = Path(tempfile.mkdtemp(prefix="vmbuild-bench-boot-"))
        try:
            results["boots"] = []
            for index in range(args.boots):
                log(f"boot {index + 1}/{args.boots} under TCG")
                results["boots"].append(boot_once(image, work, index))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finish_machine_info(results["machine"])
    write_json(RESULTS, results)
    log(f"results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
