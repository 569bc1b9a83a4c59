"""Per-stage timings of the example recipe: one cold build, then two warm builds.

The first warm build creates the warm state (its launch stage includes saving it), the
second restores it. Each build runs as users run it (`vmbuild --json run`, a
subprocess, under TCG) with a private work folder and a private warm cache, so the
numbers neither use nor disturb anyone else's warm states; the cached base image is
shared. Results: benchmarks/results/pipeline_stages.json and .md.

    .venv/bin/python benchmarks/pipeline_stages.py [--recipe images/recipes/demo.yml]

The helpers here (`machine_info`, `private_cache`, `run_vmbuild`, ...) are shared
with benchmarks/warm_vs_packer.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vmbuild.signals import interruptible, shielded

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEMO = ROOT / "images" / "recipes" / "demo.yml"
# The stages before the snapshot; the build stage ends once image.qcow2 is written
# (in the background when a test VM follows): what Packer's whole build does.
BUILD_STAGES = ("prepare", "launch", "build", "sanitize")
# Cache folders a private cache borrows from the user's cache (base images are big and
# slow to make; warm states are what the benchmark measures, so those stay private).
SHARED_KINDS = ("bootstrap", "downloads")
BUILD_TIMEOUT = 45 * 60


def log(message: str) -> None:
    """Progress of the benchmark itself (a script, not library code: stderr is fine)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


# -- machine ---------------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def tool_version(argv: list[str]) -> str | None:
    """First line of a tool's version output, or None when it is missing."""
    from vmbuild.errors import VmbuildError
    from vmbuild.proc import run

    with contextlib.suppress(VmbuildError):
        proc = run(argv, check=False)
        lines = (proc.stdout or proc.stderr).strip().splitlines()
        return lines[0] if lines else None
    return None


def machine_info() -> dict[str, Any]:
    """What shapes the numbers: cores, load, accelerator, versions, date."""
    from vmbuild.build import host_versions

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "load_average_start": load_average(),
        "accelerator": "tcg",
        "versions": host_versions(),
        "python": sys.version.split()[0],
    }


def finish_machine_info(info: dict[str, Any]) -> dict[str, Any]:
    info["load_average_end"] = load_average()
    info["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return info


# -- a private cache -------------------------------------------------------------------


@contextlib.contextmanager
def private_cache(parent: Path | None = None) -> Iterator[dict[str, str]]:
    """An environment whose VMBUILD_CACHE is a fresh folder, removed afterwards.

    Base images and downloads are linked from the user's cache; warm states start
    empty, so the first warm build really creates one.
    """
    from vmbuild.paths import cache_dir

    folder = Path(tempfile.mkdtemp(prefix="vmbuild-bench-cache-", dir=parent))
    try:
        for kind in SHARED_KINDS:
            (folder / kind).symlink_to(cache_dir(kind), target_is_directory=True)
        yield {**os.environ, "VMBUILD_CACHE": str(folder)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ensure_base_image(definition: Path) -> Path:
    """The cached base image of `definition` (built first when missing)."""
    from vmbuild.bootstrap import ensure_image

    log(f"base image for {definition.relative_to(ROOT)}")
    return ensure_image(definition)


# -- one vmbuild build -----------------------------------------------------------------


@dataclass
class BuildRun:
    """One `vmbuild run`: wall time, per-stage seconds and what the manifest says."""

    label: str
    wall_seconds: float
    status: str
    stage_seconds: dict[str, float] = field(default_factory=dict)
    sub_stage_seconds: dict[str, float] = field(default_factory=dict)
    boot_seconds: dict[str, float] = field(default_factory=dict)
    image_written_seconds: float | None = None  # snapshot start → image.qcow2 written
    warm: dict[str, Any] | None = None
    build_dir: str | None = None
    error: str | None = None

    @property
    def build_stage_seconds(self) -> float:
        """prepare + launch + build + sanitize, then until image.qcow2 was written and
        checked (the snapshot stage, or its background job when a test VM follows)."""
        before = sum(self.stage_seconds.get(s, 0.0) for s in BUILD_STAGES)
        snapshot = self.stage_seconds.get("snapshot", 0.0)
        return round(before + max(snapshot, self.image_written_seconds or 0.0), 3)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "build_stage_seconds": self.build_stage_seconds}


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM first (vmbuild then removes its VMs), SIGKILL if it does not stop."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _nested_stages(events_file: Path) -> dict[str, float]:
    """Seconds of the stages reported inside pipeline stages (phases, warm-create)."""
    nested: dict[str, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in events_file.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                if event.get("kind") == "stage-end" and ":" in str(event.get("stage")):
                    nested[event["stage"]] = event["data"].get("seconds")
                elif event.get("kind") == "stage-end" and event.get("stage") == "warm-create":
                    nested["warm-create"] = event["data"].get("seconds")
    return nested


def run_vmbuild(
    label: str,
    recipe: Path,
    workdir: Path,
    env: dict[str, str],
    *,
    warm: bool,
    test: bool = True,
    log_file: Path | None = None,
    timeout: float = BUILD_TIMEOUT,
) -> BuildRun:
    """Run `vmbuild --json run` as a user would and collect its timings."""
    argv = [sys.executable, "-m", "vmbuild.cli", "--json", "run", str(recipe),
            "--workdir", str(workdir), "--accel", "tcg", "--no-distribute"]  # fmt: skip
    if not warm:
        argv.append("--no-warm")
    if not test:
        argv.append("--no-test")
    log(f"{label}: vmbuild run {recipe.name} ({'warm' if warm else 'cold'})")
    out = open(log_file or os.devnull, "w")  # noqa: SIM115 - closed below, after the wait
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=ROOT)  # fmt: skip
    try:
        proc.wait(timeout=timeout)
    except BaseException:
        with shielded():
            _stop(proc)
        raise
    finally:
        out.close()
    wall = round(time.monotonic() - start, 3)
    builds = sorted(workdir.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not builds:
        return BuildRun(label, wall, "failed", error=f"no build folder (exit {proc.returncode})")
    manifest = json.loads(builds[-1].read_text())
    run = BuildRun(
        label=label,
        wall_seconds=wall,
        status=manifest.get("status", "?"),
        stage_seconds=manifest.get("stage_seconds", {}),
        sub_stage_seconds=_nested_stages(builds[-1].parent / "logs" / "events.jsonl"),
        boot_seconds=manifest.get("boot_seconds", {}),
        image_written_seconds=(manifest.get("image") or {}).get("written_seconds"),
        warm=manifest.get("warm"),
        build_dir=str(builds[-1].parent),
        error=manifest.get("error"),
    )
    log(f"{label}: {run.status} in {wall:.0f}s (build stage {run.build_stage_seconds:.0f}s)")
    return run


def discard_build(run: BuildRun) -> None:
    """Remove a build folder's images once its timings are read (logs are kept)."""
    if run.build_dir:
        folder = Path(run.build_dir)
        (folder / "image.qcow2").unlink(missing_ok=True)
        shutil.rmtree(folder / "outputs", ignore_errors=True)


@contextlib.contextmanager
def work_folder(*, keep: bool = False) -> Iterator[Path]:
    """A scratch folder for build folders and logs: removed afterwards unless `keep`
    is set or a build failed (its logs are then worth reading)."""
    folder = Path(tempfile.mkdtemp(prefix="vmbuild-bench-"))
    failed = False
    try:
        yield folder
        failed = any(
            json.loads(m.read_text()).get("status") != "success"
            for m in folder.glob("*/*/manifest.json")
        )
    except BaseException:
        failed = True
        raise
    finally:
        if keep or failed:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def write_results(
    name: str, data: dict[str, Any], render: Callable[[], str], folder: Path = RESULTS
) -> Path:
    """benchmarks/results/<name>.json, then the Markdown `render()` makes of it in .md.

    The JSON goes first, so a fault in the summary never costs an hour of measurements.
    """
    from vmbuild.fsutil import atomic_open, write_json

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{name}.json", data)
    log(f"results: {folder / name}.json")
    with atomic_open(folder / f"{name}.md") as fh:
        fh.write(render())
    log(f"summary: {folder / name}.md")
    return folder / f"{name}.json"


def machine_markdown(info: dict[str, Any]) -> str:
    versions = info.get("versions", {})
    return (
        f"Machine: {info.get('nproc')} cores, accelerator {info.get('accelerator')}, "
        f"QEMU {versions.get('qemu')}, libvirt {versions.get('libvirt')}, "
        f"kernel {versions.get('kernel')}; load average at start "
        f"{info.get('load_average_start')}, at end {info.get('load_average_end')}; "
        f"{info.get('date')} to {info.get('finished')}.\n"
    )


# -- this benchmark ---------------------------------------------------------------------

COLUMNS = [
    ("prepare", lambda r: r.stage_seconds.get("prepare")),
    ("launch", lambda r: r.stage_seconds.get("launch")),
    ("boot to SSH", lambda r: r.boot_seconds.get("build")),
    ("warm-create", lambda r: r.sub_stage_seconds.get("warm-create")),
    ("build phase", lambda r: r.sub_stage_seconds.get("phase:build")),
    ("validate phase", lambda r: r.sub_stage_seconds.get("phase:validate")),
    ("build (stage)", lambda r: r.stage_seconds.get("build")),
    ("sanitize", lambda r: r.stage_seconds.get("sanitize")),
    ("snapshot", lambda r: r.stage_seconds.get("snapshot")),
    ("image written", lambda r: r.image_written_seconds),
    ("test", lambda r: r.stage_seconds.get("test")),
    ("test boot to SSH", lambda r: r.boot_seconds.get("test")),
    ("output", lambda r: r.stage_seconds.get("output")),
    ("up to the image", lambda r: r.build_stage_seconds),
    ("wall", lambda r: r.wall_seconds),
]


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def stage_table(runs: list[BuildRun]) -> str:
    """Stages as rows, builds as columns (seconds)."""
    lines = ["| seconds | " + " | ".join(r.label for r in runs) + " |",
             "|---|" + "---:|" * len(runs)]  # fmt: skip
    for name, get in COLUMNS:
        lines.append(f"| {name} | " + " | ".join(_cell(get(r)) for r in runs) + " |")
    return "\n".join(lines) + "\n"


def markdown(data: dict[str, Any], runs: list[BuildRun]) -> str:
    failed = [r for r in runs if r.status != "success"]
    notes = "".join(f"- **{r.label} {r.status}**: {r.error}\n" for r in failed)
    return (
        "# Pipeline stages: cold and warm builds of the example recipe\n\n"
        f"Recipe `{data['recipe']}`, run with `vmbuild --json run --accel tcg "
        '--no-distribute` (cold adds `--no-warm`). "launch" holds boot to SSH (cold) or '
        "the restore of the warm state (warm), plus saving the state on the first warm "
        'build (warm-create). "image written" counts from the snapshot stage\'s start until '
        "image.qcow2 was written and checked: with a test VM that runs in the background, "
        'while the test VM boots. "up to the image" is prepare+launch+build+sanitize plus '
        'the longer of snapshot and image written; "wall" is the whole `vmbuild run`, test '
        "VM (booted cold) included.\n\n"
        + stage_table(runs)
        + ("\n" + notes if notes else "")
        + "\n"
        + machine_markdown(data["machine"])
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=DEMO)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the build folders")
    args = parser.parse_args()
    recipe = args.recipe.resolve()
    info = machine_info()
    runs: list[BuildRun] = []
    with interruptible(), work_folder(keep=args.keep) as work, private_cache() as env:
        for label, warm in (("cold", False), ("warm 1st", True), ("warm 2nd", True)):
            slug = label.replace(" ", "-")
            run = run_vmbuild(label, recipe, work / slug, env, warm=warm,
                              log_file=work / f"{slug}.log")  # fmt: skip
            runs.append(run)
            if not args.keep:
                discard_build(run)
    data = {
        "benchmark": "pipeline_stages",
        "recipe": str(recipe.relative_to(ROOT) if recipe.is_relative_to(ROOT) else recipe),
        "unit": "seconds",
        "machine": finish_machine_info(info),
        "runs": [r.to_dict() for r in runs],
    }
    write_results("pipeline_stages", data, lambda: markdown(data, runs), args.output)
    return 0 if all(r.status == "success" for r in runs) else 1


def run_script(main: Callable[[], int]) -> None:
    """Exit with `main()`'s code; 130 after Ctrl-C or SIGTERM (VMs and folders are gone)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    run_script(main)
