"""The published recipe JSON Schema, generated from the models.

`vmbuild/schemas/recipe.schema.json` is this output, committed; a test checks it is
current. Regenerate with `.venv/bin/python -m vmbuild.cli schema --write`.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from vmbuild.config.recipe import Recipe
from vmbuild.fsutil import atomic_open

SCHEMA_ID = "urn:vmbuild:schema:recipe"
PUBLISHED = Path(__file__).resolve().parent.parent / "schemas" / "recipe.schema.json"


def recipe_schema() -> dict[str, Any]:
    """The recipe's JSON Schema (draft 2020-12): unknown keys are rejected at every level."""
    return copy.deepcopy(_recipe_schema())


@functools.cache
def _recipe_schema() -> dict[str, Any]:
    # The models (and the store and format modules feeding them) are fixed once imported.
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "vmbuild recipe",
        **Recipe.json_schema(),
    }


def render(schema: dict[str, Any]) -> str:
    """The schema as committed: two-space indent, a trailing newline."""
    return json.dumps(schema, indent=2) + "\n"


def write(dest: Path = PUBLISHED) -> Path:
    with atomic_open(dest) as fh:
        fh.write(render(recipe_schema()))
    return dest
