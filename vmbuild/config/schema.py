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


def markdown(schema: dict[str, Any] | None = None) -> str:
    """Every field as a Markdown table (field, type, default, description), for the docs."""
    rows = ["| Field | Type | Default | Description |", "|---|---|---|---|"]
    for name, prop, required in _fields(schema or recipe_schema(), ""):
        default = "(required)" if required else _code(prop.get("default"))
        description = str(prop.get("description", "")).replace("|", "\\|")
        rows.append(f"| `{name}` | {_type_words(prop)} | {default} | {description} |")
    return "\n".join(rows) + "\n"


def _fields(node: dict[str, Any], prefix: str) -> list[tuple[str, dict[str, Any], bool]]:
    found = []
    required = set(node.get("required", []))
    for name, prop in node.get("properties", {}).items():
        found.append((prefix + name, prop, name in required))
        if "properties" in prop:
            found += _fields(prop, f"{prefix}{name}.")
        items = prop.get("items")
        if isinstance(items, dict) and "properties" in items:
            found += _fields(items, f"{prefix}{name}[].")
    return found


def _type_words(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    alternatives: list[dict[str, Any]] = prop.get("oneOf") or prop.get("anyOf") or []
    if alternatives:
        return " or ".join(_type_words(alt) for alt in alternatives)
    kind = prop.get("type", "")
    if kind == "array":
        items = prop.get("items", {})
        return f"list of {_type_words(items) if isinstance(items, dict) else 'items'}"
    kinds = kind if isinstance(kind, list) else [kind]
    words = {"object": "mapping", "boolean": "bool"}
    return " or ".join(words.get(str(k), str(k)) for k in kinds if k) or "see description"


def _code(value: Any) -> str:
    return "" if value is None else f"`{json.dumps(value)}`"
