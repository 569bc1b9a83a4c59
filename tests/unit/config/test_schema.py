"""The published schema file is the one the models generate, and it is strict everywhere."""

from __future__ import annotations

import json

import jsonschema

from vmbuild.config.schema import PUBLISHED, recipe_schema, render


def test_committed_schema_is_current():
    assert PUBLISHED.read_text() == render(recipe_schema()), (
        "vmbuild/schemas/recipe.schema.json is stale: run "
        "`.venv/bin/python -m vmbuild.cli schema --write` and commit it"
    )


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(recipe_schema())


def _objects(node, path="$"):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _objects(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{path}[{i}]")


def test_recipe_objects_reject_unknown_keys():
    schema = json.loads(PUBLISHED.read_text())
    # Our own models; output/distribute fragments belong to their modules.
    ours = [
        (path, node)
        for path, node in _objects(schema)
        if ".output" not in path and ".distribute" not in path
    ]
    assert len(ours) >= 9  # recipe, parent, component, vm, network, timeouts, ...
    loose = [path for path, node in ours if node.get("additionalProperties") is not False]
    assert loose == []
    assert all("description" in p for _, node in ours for p in node["properties"].values())
