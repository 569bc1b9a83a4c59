"""Any wrong value anywhere in a recipe gives a RecipeError, never a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.unit.config.test_roundtrip import BASE_DEFINITION, EVERY_FIELD
from vmbuild.config import RecipeError, load_recipe

# One of each JSON type, plus the empty string (several fields need non-empty strings).
WRONG = [None, -1, 2.5, "", True, [1], {"a": 1}]


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    found = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*path, i))
    return found


def _replaced(node: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replaced(node[path[0]], path[1:], value)
    return copy


def test_every_wrong_value_is_reported_not_crashed(recipe_dir: Path):
    (recipe_dir / "builds" / "web-1.0.0").mkdir(parents=True)
    (recipe_dir / "builds" / "web-1.0.0" / "manifest.json").write_text("{}")
    (recipe_dir / "base.yml").write_text(BASE_DEFINITION.read_text())
    data = yaml.safe_load(EVERY_FIELD)
    target = recipe_dir / "recipe.yml"
    reported = 0
    for path in _paths(data):
        for wrong in WRONG:
            # JSON is YAML, and much faster to write than yaml.safe_dump.
            target.write_text(json.dumps(_replaced(data, path, wrong), indent=1))
            try:
                load_recipe(target, check_components=False)
            except RecipeError as exc:
                assert exc.problems, (path, wrong)
                assert all(p.file == str(target) and p.line for p in exc.problems), exc
                reported += 1
    assert reported > 4 * len(_paths(data))
