"""`vmbuild validate RECIPE...`: check recipes and their components without building anything.

Prints `recipe.yml: ok` or one `file:line: field: message` line per problem; exit 0 when
every recipe is valid, else 2. With `--json`:
`{"valid": bool, "recipes": [{"recipe", "valid", "problems": [{"file", "line", "field",
"message"}]}]}`.
"""

from __future__ import annotations

import argparse
import json

from vmbuild.config import load_recipe
from vmbuild.config.problems import Problem, RecipeError
from vmbuild.errors import InputError

HELP = "check recipes and their component documents; nothing boots (exit 0 ok, 2 invalid)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipes", nargs="+", metavar="RECIPE", help="recipe files")
    parser.add_argument(
        "--no-components",
        action="store_true",
        help="skip checking component documents with the guest agent",
    )
    # Also accepted after the verb; SUPPRESS keeps a global `vmbuild --json validate` intact.
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print a JSON report"
    )


def check(path: str, *, components: bool = True) -> list[Problem]:
    """Every problem in one recipe (empty when it is valid)."""
    try:
        load_recipe(path, check_components=components)
    except RecipeError as exc:
        return exc.problems
    except InputError as exc:
        return [Problem(path, None, "", exc.message.removeprefix(f"{path}: "))]
    return []


def main(args: argparse.Namespace) -> int:
    reports = []
    for path in args.recipes:
        problems = check(path, components=not args.no_components)
        reports.append(
            {"recipe": path, "valid": not problems, "problems": [p.to_dict() for p in problems]}
        )
    valid = all(r["valid"] for r in reports)
    if getattr(args, "json", False):
        print(json.dumps({"valid": valid, "recipes": reports}, indent=2))
    else:
        for report, path in zip(reports, args.recipes, strict=True):
            if report["valid"]:
                print(f"{path}: ok")
            else:
                for problem in report["problems"]:
                    print(Problem(**problem))
    return 0 if valid else 2
