"""vmbuild with a warm state against Packer's QEMU builder, side by side in one run.

Both start from the same cached base image (images/base/debian-12.yml), run the same
shell step (benchmarks/packer/shell-step.sh) under the same accelerator (TCG) and VM
shape (2 vCPUs, 1 GiB, pc, virtio disk) and end with a zstd-compressed standalone
qcow2. Packer (Debian's 1.6.6) boots a copy of the base image with a NoCloud seed
made by vmbuild.seed, waits for SSH, runs the step, shuts down and compacts
(benchmarks/packer/debian-shell.json). vmbuild restores its warm state, runs the step
as a component, sanitizes, snapshots, then boots a fresh VM cold from the new image
for the test phase and writes its outputs.

Before the rounds, one warm build creates the warm state (timed on its own). Then the
rounds alternate: packer, vmbuild, packer, vmbuild, ... Ratios compare vmbuild's build
stage (prepare+launch+build+sanitize, then until image.qcow2 is written, which happens
in the background while the test VM boots) and its whole `vmbuild run` (test VM
included) with Packer's whole `packer build`; targets 0.3x and 1.1x.
Results: benchmarks/results/warm_vs_packer.json and .md.

    .venv/bin/python benchmarks/warm_vs_packer.py [--rounds 3]

Everything listens on 127.0.0.1 (SSH forwards, Packer's VNC); guests get QEMU
user-mode networking only; Packer's update check is off (CHECKPOINT_DISABLE).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pipeline_stages import (
    BUILD_TIMEOUT,
    RESULTS,
    ROOT,
    BuildRun,
    discard_build,
    ensure_base_image,
    finish_machine_info,
    log,
    machine_info,
    machine_markdown,
    median,
    private_cache,
    run_script,
    run_vmbuild,
    tool_version,
    work_folder,
    write_results,
)

from vmbuild.signals import interruptible, shielded
from vmbuild.vm.accel import TCG_CPU_MODEL

PACKER_DIR = ROOT / "benchmarks" / "packer"
TEMPLATE = PACKER_DIR / "debian-shell.json"
SHELL_STEP = PACKER_DIR / "shell-step.sh"
BASE_DEFINITION = ROOT / "images" / "base" / "debian-12.yml"
SSH_USER = "build"
MEASURES = {
    "packer": "wall time of `packer build` (copy, resize, boot, SSH, shell step, shutdown, "
    "zstd convert)",
    "vmbuild_build_stage": "prepare+launch+build+sanitize from manifest.json, then until the "
    "zstd image.qcow2 was written and checked (manifest image.written_seconds: with a test "
    "VM, image.qcow2 is written in the background while the test VM boots an overlay of "
    "the same build disk)",
    "vmbuild_pipeline": "wall time of `vmbuild --json run --no-distribute` (adds the "
    "cold-booted test VM and output)",
    "first_warm_build": "run with --no-test: it only has to leave the warm state behind",
}
TARGET_BUILD_RATIO = 0.3
TARGET_PIPELINE_RATIO = 1.1
# Packer's UI lines that open each of its stages (1.6.6 wording), in order.
PACKER_MARKERS = [
    ("prepare", None),
    ("boot to SSH", re.compile(r"Starting VM")),
    ("provision", re.compile(r"Connected to SSH")),
    ("shutdown", re.compile(r"Gracefully halting")),
    ("convert", re.compile(r"Converting hard drive")),
    ("finish", re.compile(r"Build '.*' finished")),
]


# -- what both builders run --------------------------------------------------------------


def write_vmbuild_recipe(folder: Path) -> Path:
    """A recipe and a component that run shell-step.sh as vmbuild's build phase."""
    component = {
        "name": "bench-shell-step",
        "description": "benchmarks/packer/shell-step.sh as one ExecuteBash step",
        "schemaVersion": 1.0,
        "phases": [
            {"name": "build", "steps": [{"name": "ShellStep", "action": "ExecuteBash",
                                         "inputs": {"commands": [SHELL_STEP.read_text()]}}]},
            {"name": "test", "steps": [{"name": "StepResultSurvived", "action": "ExecuteBash",
                                        "inputs": {"commands": [
                                            "test -s /etc/bench-release",
                                            "sha256sum --check --quiet /opt/bench/blob.sha256",
                                        ]}}]},
        ],
    }  # fmt: skip
    recipe = {
        "name": "bench-shell-step",
        "version": "1.0.0",
        "description": "warm_vs_packer: the base image plus shell-step.sh",
        "parent": {"bootstrap": str(BASE_DEFINITION)},
        "components": [{"path": "bench-shell-step.yml"}],
        "vm": {"cpus": 2, "memory": "1G", "disk_size": "4G", "firmware": "bios",
               "machine": "pc", "accelerator": "tcg", "network": {"mode": "user"}},
        "timeouts": {"build": "20m"},
        "snapshot": {"compression": "zstd"},
        "test": {"enabled": True, "timeout": "20m"},
        "output": {"formats": ["qcow2"]},
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench-shell-step.yml").write_text(yaml.safe_dump(component, sort_keys=False))
    path = folder / "recipe.yml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def write_packer_seed(folder: Path) -> tuple[Path, Path]:
    """The NoCloud seed (same kind vmbuild makes) and the private key Packer logs in with."""
    from vmbuild.keys import generate_host_keys, generate_keypair
    from vmbuild.seed import SeedSpec, write_seed

    key = generate_keypair(folder / "id_ed25519", comment="packer-bench")
    spec = SeedSpec(
        instance_id=f"packer-{uuid.uuid4().hex[:12]}",
        hostname="packer-bench",
        authorized_keys=[key.public],
        host_keys=generate_host_keys(),
        user=SSH_USER,
    )
    return write_seed(folder / "seed.iso", spec), key.private_path


# -- one Packer build --------------------------------------------------------------------


@dataclass
class PackerRun:
    label: str
    wall_seconds: float
    status: str
    stage_seconds: dict[str, float] = field(default_factory=dict)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    image: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def packer_stages(timeline: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """Seconds between the UI lines that open Packer's stages (`PACKER_MARKERS`)."""
    starts: dict[str, float] = {"prepare": 0.0}
    for name, pattern in PACKER_MARKERS[1:]:
        hit = next((t for t, line in timeline if pattern and pattern.search(line)), None)
        if hit is not None:
            starts[name] = hit
    ordered = sorted(starts.items(), key=lambda kv: kv[1])
    stages = {}
    for (name, start), (_, end) in zip(ordered, [*ordered[1:], ("end", wall)], strict=True):
        if name != "finish":
            stages[name] = round(end - start, 3)
    return stages


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C to Packer (it stops its QEMU and removes its output), then the group."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def image_facts(path: Path) -> dict[str, Any] | None:
    """Size and compression of an output qcow2 (to check both made the same kind)."""
    from vmbuild import disk
    from vmbuild.errors import VmbuildError
    from vmbuild.proc import run

    if not path.is_file():
        return None
    facts: dict[str, Any] = {"size": path.stat().st_size}
    with contextlib.suppress(VmbuildError):
        facts["virtual_size"] = disk.info(path).virtual_size
        out = run(["qemu-img", "info", "--output=json", str(path)]).stdout
        match = re.search(r'"compression-type":\s*"(\w+)"', out)
        facts["compression"] = match.group(1) if match else None
    return facts


def run_packer(label: str, base_image: Path, folder: Path, *, timeout: float) -> PackerRun:
    """`packer build` of debian-shell.json; the clock includes all of Packer's own steps."""
    folder.mkdir(parents=True)
    seed, key = write_packer_seed(folder)
    output = folder / "output"
    argv = [
        "packer", "build", "-color=false",
        "-var", f"source_image={base_image}", "-var", f"seed_iso={seed}",
        "-var", f"ssh_key={key}", "-var", f"ssh_user={SSH_USER}",
        "-var", f"shell_step={SHELL_STEP}", "-var", f"output_dir={output}",
        "-var", f"console_log={folder / 'console.log'}", "-var", f"cpu_model={TCG_CPU_MODEL}",
        str(TEMPLATE),
    ]  # fmt: skip
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "PACKER_CACHE_DIR": str(folder / "cache"),
           "PACKER_CONFIG_DIR": str(folder), "PACKER_NO_COLOR": "1"}  # fmt: skip
    log(f"{label}: packer build {TEMPLATE.name}")
    timeline: list[tuple[float, str]] = []
    start = time.monotonic()
    with open(folder / "packer.log", "w") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, cwd=folder, start_new_session=True)  # fmt: skip
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                now = round(time.monotonic() - start, 3)
                out.write(f"{now:9.3f} {line}")
                if line.startswith(("==> ", "Build ")):
                    timeline.append((now, line.strip()))
                if now > timeout:
                    raise TimeoutError(f"packer build took over {timeout:.0f}s")
            proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
        except BaseException:
            with shielded():
                _stop_group(proc)
            raise
    wall = round(time.monotonic() - start, 3)
    status = "success" if proc.returncode == 0 else "failed"
    error = None
    if status != "success":
        error = next((line for _, line in reversed(timeline) if "rror" in line), "see packer.log")
    run = PackerRun(label, wall, status, packer_stages(timeline, wall), timeline,
                    image_facts(output / "image.qcow2"), error)  # fmt: skip
    log(f"{label}: {status} in {wall:.0f}s")
    shutil.rmtree(output, ignore_errors=True)
    return run


# -- results -------------------------------------------------------------------------------


def restored(run: BuildRun) -> bool:
    """True when the build restored a warm state that existed before it started."""
    warm = run.warm or {}
    return bool(warm) and not warm.get("created") and not warm.get("fallback")


def ratios(packer: list[PackerRun], vmbuild: list[BuildRun]) -> dict[str, Any]:
    """vmbuild over Packer: medians, and per round (round i pairs packer i and vmbuild i)."""
    ok_p = [p.wall_seconds for p in packer if p.status == "success"]
    ok_v = [v for v in vmbuild if v.status == "success"]
    packer_median = median(ok_p)
    build_median = median([v.build_stage_seconds for v in ok_v])
    pipeline_median = median([v.wall_seconds for v in ok_v])

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    rounds = [
        {"round": i + 1, "packer_seconds": p.wall_seconds,
         "vmbuild_build_stage_seconds": v.build_stage_seconds,
         "vmbuild_pipeline_seconds": v.wall_seconds,
         "build_ratio": ratio(v.build_stage_seconds, p.wall_seconds),
         "pipeline_ratio": ratio(v.wall_seconds, p.wall_seconds),
         "warm_restored": restored(v)}
        for i, (p, v) in enumerate(zip(packer, vmbuild, strict=False))
        if p.status == "success" and v.status == "success"
    ]  # fmt: skip
    build_ratio = ratio(build_median, packer_median)
    pipeline_ratio = ratio(pipeline_median, packer_median)
    # Rounds whose vmbuild restored an existing state (not made one, not booted cold).
    clean = [r for r in rounds if r["warm_restored"]]
    return {
        "packer_build_median_seconds": packer_median,
        "vmbuild_build_stage_median_seconds": build_median,
        "vmbuild_pipeline_median_seconds": pipeline_median,
        "build_ratio": build_ratio,
        "build_ratio_target": TARGET_BUILD_RATIO,
        "build_ratio_met": build_ratio is not None and build_ratio <= TARGET_BUILD_RATIO,
        "pipeline_ratio": pipeline_ratio,
        "pipeline_ratio_target": TARGET_PIPELINE_RATIO,
        "pipeline_ratio_met": pipeline_ratio is not None
        and pipeline_ratio <= TARGET_PIPELINE_RATIO,
        "rounds": rounds,
        "restored_rounds": {
            "count": len(clean),
            "build_ratio": median([r["build_ratio"] for r in clean]),
            "pipeline_ratio": median([r["pipeline_ratio"] for r in clean]),
        },
    }


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _image(facts: dict[str, Any] | None) -> str:
    if not facts:
        return "-"
    return f"{facts['size'] / 2**20:.0f} MiB qcow2 ({facts.get('compression')} compression)"


def markdown(data: dict[str, Any], first: BuildRun | None, packer: list[PackerRun],
             vmbuild: list[BuildRun]) -> str:  # fmt: skip
    r = data["ratios"]

    def verdict(met: bool) -> str:
        return "met" if met else "**not met**"

    lines = [
        "# vmbuild (warm) against Packer 1.6.6 (QEMU builder)\n",
        f"Same base image, same shell step (`benchmarks/packer/shell-step.sh`), TCG, "
        f"{data['rounds_done']} of {data['rounds_requested']} alternating rounds"
        f"{'' if data['complete'] else ' (run stopped early: partial)'}. Seconds; medians "
        "over successful rounds.\n",
        "| figure | value | target |",
        "|---|---:|---:|",
        f"| Packer `packer build` (median) | {_cell(r['packer_build_median_seconds'])} | |",
        "| vmbuild build stage, prepare..image written (median) | "
        f"{_cell(r['vmbuild_build_stage_median_seconds'])} | |",
        "| vmbuild whole `vmbuild run`, test VM included (median) | "
        f"{_cell(r['vmbuild_pipeline_median_seconds'])} | |",
        f"| build ratio (vmbuild build stage / Packer) | {r['build_ratio']} | "
        f"<= {r['build_ratio_target']} ({verdict(r['build_ratio_met'])}) |",
        f"| pipeline ratio (vmbuild whole run / Packer) | {r['pipeline_ratio']} | "
        f"<= {r['pipeline_ratio_target']} ({verdict(r['pipeline_ratio_met'])}) |",
        f"| same, rounds that restored an existing warm state only "
        f"({r['restored_rounds']['count']}; median of per-round ratios) | "
        f"build {r['restored_rounds']['build_ratio']}, "
        f"pipeline {r['restored_rounds']['pipeline_ratio']} | |",
        "",
        "## Rounds\n",
        "| round | Packer | vmbuild build stage | vmbuild whole run | build ratio | "
        "pipeline ratio | warm state |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in r["rounds"]:
        lines.append(
            f"| {row['round']} | {_cell(row['packer_seconds'])} | "
            f"{_cell(row['vmbuild_build_stage_seconds'])} | "
            f"{_cell(row['vmbuild_pipeline_seconds'])} | {row['build_ratio']} | "
            f"{row['pipeline_ratio']} | "
            f"{'restored' if row.get('warm_restored') else '**made in this round**'} |"
        )
    lines += ["", "## Packer stages\n"]
    names = [name for name, _ in PACKER_MARKERS if name != "finish"]
    lines.append("| run | " + " | ".join(names) + " | total |")
    lines.append("|---|" + "---:|" * (len(names) + 1))
    for p in packer:
        cells = " | ".join(_cell(p.stage_seconds.get(n)) for n in names)
        lines.append(f"| {p.label} | {cells} | {_cell(p.wall_seconds)} |")
    lines += ["", "## vmbuild stages\n"]
    stage_names = ["prepare", "launch", "build", "sanitize", "snapshot", "test", "output"]
    lines.append("| run | " + " | ".join(stage_names)
                 + " | image written | restore | whole run |")  # fmt: skip
    lines.append("|---|" + "---:|" * (len(stage_names) + 3))
    for v in [*([first] if first else []), *vmbuild]:
        cells = " | ".join(_cell(v.stage_seconds.get(n)) for n in stage_names)
        restore = (v.warm or {}).get("restore_seconds")
        lines.append(f"| {v.label} | {cells} | {_cell(v.image_written_seconds)} | "
                     f"{_cell(restore)} | {_cell(v.wall_seconds)} |")  # fmt: skip
    failures = [x for x in [*packer, *vmbuild] if x.status != "success"]
    if first and first.status != "success":
        failures.insert(0, first)
    if failures:
        lines += ["", "## Failures\n"]
        lines += [f"- {x.label}: {x.status}: {x.error}" for x in failures]
    images = data.get("images", {})
    lines += [
        "",
        f"Output images: Packer {_image(images.get('packer'))}, "
        f"vmbuild {_image(images.get('vmbuild'))}.",
        "",
        *[f"Note: {note}\n" for note in data.get("notes", [])],
        machine_markdown(data["machine"]),
    ]
    return "\n".join(lines)


def _load(cls: type, fields: dict[str, Any]) -> Any:
    names = cls.__dataclass_fields__
    return cls(**{k: v for k, v in fields.items() if k in names})


def rerender(path: Path, notes: list[str]) -> int:
    """Ratios and summary again from a saved JSON (after the report changed, or to add notes)."""
    data = json.loads(path.read_text())
    packer = [_load(PackerRun, p) for p in data["packer_runs"]]
    vmbuild = [_load(BuildRun, v) for v in data["vmbuild_runs"]]
    first = _load(BuildRun, data["first_warm_build"]) if data.get("first_warm_build") else None
    data["ratios"] = ratios(packer, vmbuild)
    data["notes"] = [*data.get("notes", []), *notes]
    write_results("warm_vs_packer", data, lambda: markdown(data, first, packer, vmbuild),
                  path.parent)  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=BUILD_TIMEOUT / 60,
                        help="minutes allowed for each build (default %(default)s)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep build folders and logs")
    parser.add_argument("--note", action="append", default=[], help="a note for the summary")
    parser.add_argument("--rerender", action="store_true",
                        help="recompute ratios and summary from the saved JSON")  # fmt: skip
    args = parser.parse_args()
    if args.rerender:
        return rerender(args.output / "warm_vs_packer.json", args.note)
    if shutil.which("packer") is None:
        raise SystemExit("packer not found: install it with `make setup` (apt-get install packer)")
    timeout = args.timeout * 60
    info = machine_info()
    info["versions"]["packer"] = tool_version(["packer", "version"])
    base_image = ensure_base_image(BASE_DEFINITION)
    packer_runs: list[PackerRun] = []
    vmbuild_runs: list[BuildRun] = []
    first: BuildRun | None = None
    images: dict[str, Any] = {}

    def save(complete: bool) -> None:
        """Results so far; written after every round, so a stopped run keeps its rounds."""
        data = {
            "benchmark": "warm_vs_packer",
            "unit": "seconds",
            "complete": complete,
            "rounds_requested": args.rounds,
            "rounds_done": len(vmbuild_runs),
            "base_image": str(base_image),
            "shell_step": str(SHELL_STEP.relative_to(ROOT)),
            "packer_template": str(TEMPLATE.relative_to(ROOT)),
            "measures": MEASURES,
            "notes": args.note,
            "machine": finish_machine_info(info),
            "ratios": ratios(packer_runs, vmbuild_runs),
            "images": images,
            "first_warm_build": first.to_dict() if first else None,
            "packer_runs": [p.to_dict() for p in packer_runs],
            "vmbuild_runs": [v.to_dict() for v in vmbuild_runs],
        }
        summary = lambda: markdown(data, first, packer_runs, vmbuild_runs)  # noqa: E731
        write_results("warm_vs_packer", data, summary, args.output)

    with interruptible(), work_folder(keep=args.keep) as work, private_cache() as env:
        recipe = write_vmbuild_recipe(work / "recipe")
        # Only the state matters here: no test VM, which would just cost minutes.
        first = run_vmbuild(
            "first warm build (creates the state)", recipe, work / "vmbuild-0", env,
            warm=True, test=False, log_file=work / "vmbuild-0.log", timeout=timeout,
        )  # fmt: skip
        discard_build(first)
        for i in range(1, args.rounds + 1):
            packer_runs.append(
                run_packer(f"packer {i}", base_image, work / f"packer-{i}", timeout=timeout)
            )
            images["packer"] = packer_runs[-1].image or images.get("packer")
            run = run_vmbuild(f"vmbuild {i}", recipe, work / f"vmbuild-{i}", env, warm=True,
                              log_file=work / f"vmbuild-{i}.log", timeout=timeout)  # fmt: skip
            if run.build_dir:
                images["vmbuild"] = image_facts(Path(run.build_dir) / "image.qcow2")
            vmbuild_runs.append(run)
            if not args.keep:
                discard_build(run)
            save(complete=i == args.rounds)
    ok = all(x.status == "success" for x in [*packer_runs, *vmbuild_runs])
    return 0 if ok else 1


if __name__ == "__main__":
    run_script(main)
