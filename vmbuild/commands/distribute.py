"""`vmbuild distribute BUILD_DIR [--to NAME ...] [--config FILE.yml] [--dry-run]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vmbuild import events
from vmbuild.errors import InputError

HELP = "upload an already built image to its stores (no rebuild)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("build_dir", metavar="BUILD_DIR", type=Path, help="a build folder")
    parser.add_argument(
        "--to",
        metavar="NAME",
        action="append",
        default=None,
        help="only the store with this name (repeatable; default: every store)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE.yml",
        type=Path,
        help="a YAML file with a distribute list, used instead of the recipe's",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be uploaded where, upload nothing"
    )


def load_config(path: Path) -> list[dict[str, Any]]:
    """A distribute list from YAML: either the list itself or a mapping with `distribute`."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if isinstance(data, dict) and "distribute" in data:
        data = data["distribute"]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of stores (or a mapping with 'distribute')")
    return data


def _human(results: list[dict[str, Any]], dry_run: bool) -> str:
    lines = []
    for result in results:
        lines.append(f"{result['store']} ({result['type']}): {result['location']}")
        for obj in result["objects"]:
            if dry_run:
                state = "would upload"
            elif obj.get("skipped"):
                state = "already there"
            else:
                state = "uploaded, verified"
            extra = obj.get("image_id") or obj.get("digest") or ""
            lines.append(f"  {obj['url']}  {obj['size']} bytes  {state} {extra}".rstrip())
    return "\n".join(lines) or "no stores to distribute to"


def main(args: argparse.Namespace) -> int:
    from vmbuild.distribute import distribute

    targets = load_config(args.config) if args.config else None
    if args.json:
        unsubscribe = events.subscribe(events.JsonLines(sys.stdout))
    else:
        unsubscribe = events.subscribe(events.TqdmDisplay(sys.stderr))
    try:
        results = distribute(args.build_dir, targets, only=args.to, dry_run=args.dry_run)
    finally:
        unsubscribe()
    if args.json:
        print(json.dumps({"kind": "distributions", "data": results}, sort_keys=True))
    else:
        print(_human(results, args.dry_run))
    return 0
