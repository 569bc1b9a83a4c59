"""Recipes: typed models, loading YAML with file:line errors, validation, JSON Schema export."""

from vmbuild.config.load import load_recipe
from vmbuild.config.problems import Problem, RecipeError
from vmbuild.config.recipe import (
    VM,
    Accelerator,
    Component,
    Compression,
    Firmware,
    ImageTest,
    Machine,
    Network,
    NetworkMode,
    Origin,
    Parent,
    ParentKind,
    Recipe,
    Sanitize,
    Snapshot,
    Timeouts,
)
from vmbuild.config.schema import recipe_schema

__all__ = [
    "VM",
    "Accelerator",
    "Component",
    "Compression",
    "Firmware",
    "ImageTest",
    "Machine",
    "Network",
    "NetworkMode",
    "Origin",
    "Parent",
    "ParentKind",
    "Problem",
    "Recipe",
    "RecipeError",
    "Sanitize",
    "Snapshot",
    "Timeouts",
    "load_recipe",
    "recipe_schema",
]
