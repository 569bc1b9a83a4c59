"""`vmbuild run RECIPE`: build, validate, snapshot, test, output and distribute an image."""

from __future__ import annotations

import argparse
from pathlib import Path

from vmbuild import events
from vmbuild.build import BuildOptions, OnError, run_build
from vmbuild.config import load_recipe

HELP = "build, test and distribute an image from a recipe"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", type=Path, help="the recipe file (YAML)")
    parser.add_argument(
        "--accel", choices=["auto", "kvm", "tcg"], help="override vm.accelerator (auto probes KVM)"
    )
    parser.add_argument(
        "--on-error",
        choices=[o.value for o in OnError],
        default=OnError.CLEANUP.value,
        help="keep: leave a failed build VM running and print how to ssh in",
    )
    parser.add_argument("--no-test", action="store_true", help="skip the test phase")
    parser.add_argument("--no-distribute", action="store_true", help="skip distribution")
    parser.add_argument("--no-warm", action="store_true", help="always boot the build VM cold")
    parser.add_argument("--workdir", type=Path, help="override the recipe's workdir")
    parser.add_argument("--mirror", help="package mirror for a bootstrapped parent image")
    parser.add_argument("--quiet-output", action="store_true", help="do not echo agent step output")


def attach_display(args: argparse.Namespace) -> None:
    """Subscribe the --json line output or the tqdm display to the event stream."""
    if args.json:
        events.subscribe(events.JsonLines())
    else:
        events.subscribe(
            events.TqdmDisplay(verbose_output=not getattr(args, "quiet_output", False))
        )


def main(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    attach_display(args)
    options = BuildOptions(
        accelerator=args.accel,
        on_error=OnError(args.on_error),
        test=not args.no_test,
        distribute=not args.no_distribute,
        warm=not args.no_warm,
        workdir=args.workdir,
        mirror=args.mirror,
    )
    ctx = run_build(recipe, options)
    if not args.json:
        print(ctx.build_dir)
    return 0
