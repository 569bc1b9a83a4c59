"""Output conversion choices on a real image: qcow2 zlib vs zstd vs none across qemu-img
coroutine counts (-m), and the time and size of every other output format.

The source is `--image PATH`, else the newest bootstrapped base image in the cache
(`vmbuild bootstrap` puts one there). Each case converts through `vmbuild.disk.convert`
(as `vmbuild.formats.produce` does), records wall and CPU seconds and the output size,
and checks the output against the source with `qemu-img compare`.
Results go to benchmarks/results/formats.json.

    .venv/bin/python benchmarks/formats.py [--image PATH] [--threads 1,2,4,8] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmbuild import disk, formats  # noqa: E402
from vmbuild.paths import cache_dir  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "formats.json"


def find_image() -> Path:
    candidates = sorted(cache_dir("bootstrap").glob("*/image.qcow2"), key=os.path.getmtime)
    if not candidates:
        raise SystemExit("no image: pass --image PATH (or run `vmbuild bootstrap` first)")
    return candidates[-1]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(source: Path, work: Path, spec: formats.FormatSpec, threads: int, repeat: int) -> dict:
    walls, cpus = [], []
    dest = work / f"out.{spec.ext}"
    options, compress = spec.qemu_options()
    for _ in range(repeat):
        dest.unlink(missing_ok=True)
        cpu0, t0 = children_cpu(), time.perf_counter()
        disk.convert(
            source,
            dest,
            formats.QEMU_DRIVER[spec.format],
            options=options,
            compress=compress,
            threads=threads,
        )
        walls.append(time.perf_counter() - t0)
        cpus.append(children_cpu() - cpu0)
    same = disk.compare(source, dest)
    size = dest.stat().st_size
    allocated = dest.stat().st_blocks * 512
    dest.unlink()
    return {
        **spec.describe(),
        "threads": threads,
        "wall_seconds": round(statistics.median(walls), 3),
        "cpu_seconds": round(statistics.median(cpus), 3),
        "size_bytes": size,
        "allocated_bytes": allocated,
        "identical_to_source": same,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path)
    parser.add_argument("--threads", default="1,2,4,8")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    source = (args.image or find_image()).resolve()
    info = disk.info(source)
    thread_counts = [int(t) for t in args.threads.split(",")]
    cases: list[tuple[formats.FormatSpec, int]] = []
    for comp in ("zstd", "zlib"):
        cases += [(formats.FormatSpec("qcow2", comp), t) for t in thread_counts]
    default = min(8, max(2, os.cpu_count() or 2))
    cases.append((formats.FormatSpec("qcow2", "none"), default))
    cases += [(formats.FormatSpec(f), default) for f in ("raw", "vmdk", "vhd", "vhdx")]
    rows = []
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks", prefix=".formats-") as tmp:
        for spec, threads in cases:
            row = measure(source, Path(tmp), spec, threads, args.repeat)
            print(json.dumps(row), flush=True)
            rows.append(row)
    data_size = int(info.raw.get("actual-size", 0))
    result = {
        "benchmark": "formats",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "qemu_img": disk.run(["qemu-img", "--version"]).stdout.splitlines()[0],
        "source": {
            "path": str(source),
            "format": info.format,
            "virtual_size": info.virtual_size,
            "actual_size": data_size,
            "compression": info.compression,
        },
        "repeat": args.repeat,
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
