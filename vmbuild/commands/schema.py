"""`vmbuild schema`: print (or rewrite) the recipe JSON Schema."""

from __future__ import annotations

import argparse

from vmbuild.config.schema import PUBLISHED, markdown, recipe_schema, render, write

HELP = "print the recipe JSON Schema (for editors and CI checks), or a Markdown field table"


def register(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--write", action="store_true", help=f"write it to {PUBLISHED.name} in the package"
    )
    what.add_argument(
        "--markdown", action="store_true", help="print every field as a Markdown table"
    )


def main(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown(), end="")
    elif args.write:
        print(write())
    else:
        print(render(recipe_schema()), end="")
    return 0
