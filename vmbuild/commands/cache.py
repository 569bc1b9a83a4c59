"""`vmbuild cache list|clear`: the warm VM states (and what else sits in the cache)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil

from vmbuild import warm
from vmbuild.paths import cache_root

HELP = "list or clear cached warm VM states (and other cached files)"
KINDS = ("warm", "bootstrap", "downloads")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="show the cache's entries and sizes")
    clear = sub.add_parser("clear", help="remove warm states (all, or the KEY prefixes given)")
    clear.add_argument("keys", nargs="*", metavar="KEY", help="key prefixes (default: all)")
    clear.add_argument(
        "--kind", choices=[*KINDS, "all"], default="warm",
        help="which cache to clear (default warm; bootstrap/downloads/all clear whole folders)",
    )  # fmt: skip


def _folder_size(kind: str) -> int:
    """Bytes of regular files under a cache folder (not following links or mounts)."""
    total = 0
    for top, dirs, files in os.walk(cache_root() / kind):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(top, d))]
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_size
    return total


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def main(args: argparse.Namespace) -> int:
    if args.action == "list":
        rows = []
        for entry in warm.entries():
            meta = entry.meta()
            fields = meta.get("fields", {})
            rows.append({
                "key": entry.key, "size": entry.size(), "last_used": meta.get("last_used"),
                "created": meta.get("created"), "parent_sha256": fields.get("parent_sha256"),
                "shape": {k: fields.get(k) for k in ("cpus", "memory_mib", "firmware", "machine",
                                                      "accelerator")},
            })  # fmt: skip
        totals = {kind: _folder_size(kind) for kind in KINDS}
        if args.json:
            print(json.dumps({"warm": rows, "bytes": totals, "limit": warm.max_bytes()}, indent=2))
            return 0
        print(f"warm states in {warm.root()} (limit {warm.max_bytes() / 2**30:.1f} GiB):")
        for row in rows:
            shape = row["shape"]
            size = f"{row['size'] / 2**20:8.0f} MiB"
            vm = f"{shape['cpus']} cpu {shape['memory_mib']} MiB {shape['firmware']}"
            vm += f"/{shape['machine']} {shape['accelerator']}"
            parent = str(row["parent_sha256"])[:12]
            print(f"  {row['key'][:16]}  {size}  used {_when(row['last_used'])}  {parent}  {vm}")
        if not rows:
            print("  (none)")
        for kind, total in totals.items():
            print(f"{kind:>10}: {total / 2**20:.0f} MiB")
        return 0
    if args.kind == "warm":
        removed: list[str] = []
        busy: list[str] = []
        for entry in warm.entries():
            if args.keys and not any(entry.key.startswith(k) for k in args.keys):
                continue
            (removed if warm.remove(entry) else busy).append(entry.key)
        print(f"removed {len(removed)} warm state(s)")
        if busy:
            print(f"kept {len(busy)} in use by a running build: {', '.join(k[:12] for k in busy)}")
        return 0
    kinds = KINDS if args.kind == "all" else (args.kind,)
    for kind in kinds:
        if kind == "warm":
            for entry in warm.entries():
                warm.remove(entry)
        else:
            shutil.rmtree(cache_root() / kind, ignore_errors=True)
        print(f"cleared {kind}")
    return 0
