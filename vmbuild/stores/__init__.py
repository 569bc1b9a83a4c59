"""Stores images are distributed to: one module per type, found through a registry.

Each module in this package that defines a `Store` subclass with a `TYPE` registers
it (modules starting with `_` are helpers). `config_schema()` is the JSON Schema of
one `distribute` item, discriminated on `type`; `load()` validates one item and
returns its store, raising `InputError` naming the store and the field.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

import jsonschema

from vmbuild.errors import InputError
from vmbuild.stores.base import COMMON_PROPERTIES, ImageRef, Item, LocalFile, Remote, Store

__all__ = [
    "ImageRef",
    "Item",
    "LocalFile",
    "Remote",
    "Store",
    "config_schema",
    "load",
    "registry",
]


@cache
def registry() -> dict[str, type[Store]]:
    """Store type name -> class, from every store module in this package."""
    found: dict[str, type[Store]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Store) and getattr(obj, "TYPE", None):
                found[obj.TYPE] = obj
    return dict(sorted(found.items()))


def config_schema() -> dict[str, Any]:
    """JSON Schema of one `distribute` list item: `type` picks the store's own schema."""
    types = list(registry())
    return {
        "type": "object",
        "required": ["name", "type"],
        "properties": {"name": COMMON_PROPERTIES["name"], "type": {"enum": types}},
        "allOf": [
            {
                "if": {"properties": {"type": {"const": t}}, "required": ["type"]},
                "then": cls.SCHEMA,
            }
            for t, cls in registry().items()
        ],
    }


def _field_path(error: jsonschema.ValidationError) -> str:
    parts = ""
    for p in error.absolute_path:
        parts += f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p))
    return parts


def _describe(error: jsonschema.ValidationError) -> tuple[str | None, str]:
    """(field, message) for a schema error, worded for a person."""
    path = _field_path(error)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return (f"{path}.{missing}" if path else missing), "missing (required)"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        name = extra[0] if extra else "?"
        return (f"{path}.{name}" if path else name), "unknown field"
    return path or None, error.message


def load(config: dict[str, Any], where: str) -> Store:
    """Validate one `distribute` item and build its store.

    `where` locates the item (`distribute[1]`); errors read
    `distribute[1] (name: backup): bucket: missing (required)`.
    """
    if not isinstance(config, dict):
        raise InputError(f"{where}: expected a mapping with 'name' and 'type'")
    name = config.get("name")
    label = f"{where} (name: {name})" if name else where
    kind = config.get("type")
    if kind is None:
        raise InputError(f"{label}: type: missing (required)", hint=f"one of {list(registry())}")
    cls = registry().get(kind)
    if cls is None:
        raise InputError(
            f"{label}: type: unknown store type {kind!r}",
            hint=f"known types: {', '.join(registry())}",
        )
    validator = jsonschema.Draft202012Validator(cls.SCHEMA)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        field, message = _describe(errors[0])
        raise InputError(f"{label}: {field}: {message}" if field else f"{label}: {message}")
    return cls(config, label)
