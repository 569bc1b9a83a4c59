"""Run every benchmark script in benchmarks/, one subprocess each, and say which ran.

A benchmark is any `benchmarks/*.py` except this file and names starting with `_`;
quick ones run first. A script that fails or runs out of time does not stop the
others. The summary goes to stderr and to benchmarks/results/run_all.json; the exit
code is 1 when any script failed. `make bench` calls this.

    .venv/bin/python benchmarks/run_all.py [--only NAME ...] [--skip NAME ...] [--list]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
# Cheap ones first, so a short session still gets their numbers; others follow by name.
ORDER = ["agent_overhead", "formats", "bootstrap", "pipeline_stages", "warm_vs_packer"]
DEFAULT_TIMEOUT_MINUTES = 120


def discover() -> list[str]:
    names = {p.stem for p in HERE.glob("*.py") if p.stem != "run_all" and p.name[0] != "_"}
    known = [n for n in ORDER if n in names]
    return known + sorted(names - set(known))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the benchmark's process group (its VMs get cleaned up), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 180), (signal.SIGKILL, 30)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


def run_one(name: str, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, str(HERE / f"{name}.py")]
    print(f"run_all: {name}: starting", file=sys.stderr, flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
    try:
        code: int | None = proc.wait(timeout=timeout)
        status = "ok" if code == 0 else "failed"
    except subprocess.TimeoutExpired:
        _stop(proc)
        code, status = proc.returncode, "timeout"
    except BaseException:  # Ctrl-C: stop the benchmark cleanly, then stop ourselves
        _stop(proc)
        raise
    seconds = round(time.monotonic() - start, 1)
    print(f"run_all: {name}: {status} ({seconds:.0f}s)", file=sys.stderr, flush=True)
    return {"name": name, "status": status, "exit_code": code, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run just these")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="leave these out")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_MINUTES,
                        help="minutes allowed per benchmark (default %(default)s)")  # fmt: skip
    args = parser.parse_args()
    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = sorted((set(args.only or []) | set(args.skip)) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (have: {', '.join(names)})")
    chosen = [n for n in names if (not args.only or n in args.only) and n not in args.skip]
    sys.path.insert(0, str(ROOT))
    from vmbuild.fsutil import write_json

    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results = [run_one(name, args.timeout * 60) for name in chosen]
    results += [{"name": n, "status": "skipped"} for n in names if n not in chosen]
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "run_all.json", {
        "started": started,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "benchmarks": results,
    })  # fmt: skip
    print("\nbenchmark          status    seconds", file=sys.stderr)
    for r in results:
        print(f"{r['name']:<18} {r['status']:<9} {r.get('seconds', '-')}", file=sys.stderr)
    return 0 if all(r["status"] in ("ok", "skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
