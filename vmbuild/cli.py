"""Command line: `vmbuild VERB ...`.

Each verb lives in `vmbuild/commands/<verb>.py` and exposes `HELP`, `register(parser)`
and `main(args) -> int`. Expected failures (`VmbuildError`) print one line and a
hint and exit with their code (2 input, 1 build, 130 interrupt); tracebacks only with -v.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from vmbuild import __version__, commands
from vmbuild.errors import VmbuildError

log = logging.getLogger("vmbuild")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vmbuild",
        description="Build, test and distribute VM images on local hardware (QEMU/KVM, libvirt).",
    )
    parser.add_argument("--version", action="version", version=f"vmbuild {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON event a line instead of the display"
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"vmbuild.commands.{info.name}")
        verb = getattr(module, "VERB", info.name.replace("_", "-"))
        sub_parser = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.register(sub_parser)
        sub_parser.set_defaults(handler=module.main)
    return parser


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("paramiko", "botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.handler(args) or 0)
    except VmbuildError as exc:
        if args.verbose:
            log.exception("failed")
        print(f"vmbuild: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"vmbuild: hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vmbuild: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
