"""Agent overhead per step: a document of 1,000 trivial steps against the same work done directly.

Two kinds of trivial step: ExecuteBash `true` (against running `bash script` 1,000 times
with subprocess) and CreateFile (against writing 1,000 files with open/write/rename).
The agent runs as users run it (`python -m vmbuild_agent run ... --quiet`), so each
figure includes its start-up; the start-up alone is measured with a one-step document.
Results go to benchmarks/results/agent_overhead.json.

    .venv/bin/python benchmarks/agent_overhead.py [--steps 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AGENT_DIR = ROOT / "guest-agent"
RESULTS = ROOT / "benchmarks" / "results" / "agent_overhead.json"


def document(steps: list[dict]) -> dict:
    return {"name": "bench", "schemaVersion": "1.0", "phases": [{"name": "build", "steps": steps}]}


def bash_steps(count: int, timeout: int | None = None) -> list[dict]:
    extra = {} if timeout is None else {"timeoutSeconds": timeout}
    return [
        {"name": f"S{i}", "action": "ExecuteBash", "inputs": {"commands": ["true"]}, **extra}
        for i in range(count)
    ]


def file_steps(count: int, folder: Path) -> list[dict]:
    return [
        {"name": f"F{i}", "action": "CreateFile",
         "inputs": [{"path": f"{folder}/agent-{i}.txt", "content": f"line {i}\n"}]}
        for i in range(count)
    ]  # fmt: skip


def run_agent(doc: dict, work: Path) -> float:
    path = work / "doc.json"
    path.write_text(json.dumps(doc))
    env = {**os.environ, "PYTHONPATH": str(AGENT_DIR)}
    argv = [sys.executable, "-m", "vmbuild_agent", "run", "--documents", str(path),
            "--phases", "build", "--log-directory", str(work / "logs"), "--quiet"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"agent failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def direct_bash(count: int, work: Path) -> float:
    script = work / "true.sh"
    script.write_text("true\n")
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run(["bash", str(script)], check=True, capture_output=True)
    return time.perf_counter() - start


def direct_files(count: int, folder: Path) -> float:
    start = time.perf_counter()
    for i in range(count):
        tmp = folder / f".direct-{i}.part"
        with open(tmp, "w") as fh:
            fh.write(f"line {i}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / f"direct-{i}.txt")
    return time.perf_counter() - start


def best(measure, repeat: int) -> float:
    return min(measure() for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    n = args.steps
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        work = Path(tmp)
        files = work / "files"
        files.mkdir()
        startup = best(lambda: run_agent(document(bash_steps(1)), work), args.repeat)
        agent_bash = best(lambda: run_agent(document(bash_steps(n)), work), args.repeat)
        agent_bash_nothread = best(
            lambda: run_agent(document(bash_steps(n, timeout=-1)), work), args.repeat
        )
        plain_bash = best(lambda: direct_bash(n, work), args.repeat)
        agent_files = best(lambda: run_agent(document(file_steps(n, files)), work), args.repeat)
        plain_files = best(lambda: direct_files(n, files), args.repeat)

    def per_step(agent: float, direct: float) -> float:
        return round((agent - startup - direct) / n * 1000, 3)

    results = {
        "benchmark": "agent_overhead",
        "steps": n,
        "repeat": args.repeat,
        "unit": "seconds (best of repeat); per-step figures in milliseconds",
        "host": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "agent_startup_one_step_s": round(startup, 3),
        "execute_bash": {
            "agent_s": round(agent_bash, 3),
            "agent_no_timeout_thread_s": round(agent_bash_nothread, 3),
            "direct_subprocess_s": round(plain_bash, 3),
            "overhead_per_step_ms": per_step(agent_bash, plain_bash),
            "overhead_per_step_no_timeout_ms": per_step(agent_bash_nothread, plain_bash),
        },
        "create_file": {
            "agent_s": round(agent_files, 3),
            "direct_python_s": round(plain_files, 3),
            "overhead_per_step_ms": per_step(agent_files, plain_files),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # Shared build hosts are noisy: the load shows how much to trust the figures.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.output.with_name(f".{args.output.name}.part")
    tmp_out.write_text(json.dumps(results, indent=2) + "\n")
    tmp_out.replace(args.output)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
