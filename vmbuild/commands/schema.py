"""`vmbuild schema`: print (or rewrite) the recipe JSON Schema."""

from __future__ import annotations

import argparse

from vmbuild.config.schema import PUBLISHED, recipe_schema, render, write

HELP = "print the recipe JSON Schema (for editors and CI checks)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--write", action="store_true", help=f"write it to {PUBLISHED.name} in the package"
    )


def main(args: argparse.Namespace) -> int:
    if args.write:
        print(write())
    else:
        print(render(recipe_schema()), end="")
    return 0
