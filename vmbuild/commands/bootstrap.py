"""`vmbuild bootstrap DEFINITION`: build (or reuse) a minimal base image from a package mirror."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from vmbuild import events
from vmbuild.bootstrap import ensure_image
from vmbuild.fsutil import atomic_path

HELP = "build or reuse a minimal cloud-init-ready base image (debootstrap) and print its path"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "definition", type=Path, help="base-image definition, e.g. images/base/debian-12.yml"
    )
    parser.add_argument("-o", "--output", type=Path, help="also copy the image to this path")
    parser.add_argument(
        "--mirror",
        help="package mirror URL (default: $VMBUILD_MIRROR, else the host's apt sources)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")


def main(args: argparse.Namespace) -> int:
    display = events.JsonLines() if args.json else events.TqdmDisplay()
    unsubscribe = events.subscribe(display)
    try:
        image = ensure_image(args.definition, mirror=args.mirror, force=args.force)
        path = image
        if args.output:
            with atomic_path(args.output) as tmp:
                shutil.copyfile(image, tmp)
            path = args.output
        events.result(str(path), path=str(path), cached_image=str(image))
    finally:
        unsubscribe()
    if not args.json:
        print(path, file=sys.stdout)
    return 0
