"""Frozen-dataclass models with a JSON round-trip and a JSON Schema, both driven by the fields.

Each field is declared with `setting(...)`: its default, a one-line doc (the schema's
`description`) and, where users may write more than the canonical type allows
(`memory: 2G`), the input schema. `to_dict()` gives the canonical form (what the
manifest stores), `from_dict()` reads it back; loaders normalise user input to
that same canonical form first, so there is one way in.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Model")
SchemaSource = dict[str, Any] | Callable[[], dict[str, Any]]


def setting(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    schema: SchemaSource | None = None,
    factory: Callable[[], Any] | None = None,
    internal: bool = False,
) -> Any:
    """A model field: `doc` and `schema` feed the JSON Schema; `internal` fields stay out of it.

    Internal fields (such as where in the file a value came from) are not serialised
    and do not take part in equality.
    """
    metadata = {"doc": doc, "schema": schema, "internal": internal}
    kwargs: dict[str, Any] = {"metadata": metadata}
    if internal:
        kwargs["compare"] = False
    if factory is not None:
        return dataclasses.field(default_factory=factory, **kwargs)
    return dataclasses.field(default=default, **kwargs)


class Model:
    """Base of the config dataclasses (subclasses are `@dataclass(frozen=True)`)."""

    SCHEMA_EXTRA: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able dict: paths as strings, enums as values, defaults included."""
        return {
            f.name: _dump(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if not f.metadata.get("internal")
        }

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any], **internal: Any) -> T:
        """Rebuild from a canonical dict; missing keys take their defaults."""
        hints = _hints(cls)
        kwargs: dict[str, Any] = dict(internal)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data and not f.metadata.get("internal"):
                kwargs[f.name] = _load(hints[f.name], data[f.name])
        return cls(**kwargs)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The input schema: every property documented, unknown keys rejected."""
        hints = _hints(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.metadata.get("internal"):
                continue
            source = f.metadata.get("schema")
            prop = dict(source() if callable(source) else source or _schema_for(hints[f.name]))
            prop["description"] = f.metadata["doc"]
            default = _default_of(f)
            # Nested models show their defaults field by field; None means "decided later".
            if default is not None and not isinstance(default, Model):
                prop["default"] = _dump(default)
            properties[f.name] = prop
            no_default = f.default is dataclasses.MISSING
            if no_default and f.default_factory is dataclasses.MISSING:
                required.append(f.name)
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if cls.__doc__:
            schema["description"] = cls.__doc__.strip().splitlines()[0]
        if required:
            schema["required"] = required
        schema.update(cls.SCHEMA_EXTRA)
        return schema


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """Resolved field types (evaluating string annotations is slow; classes never change)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _dump(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _dump(v) for k, v in value.items()}
    return value


def _optional_inner(tp: Any) -> Any | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _load(tp: Any, raw: Any) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        return None if raw is None else _load(inner, raw)
    origin = typing.get_origin(tp)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        return tuple(_load(item, r) for r in raw)
    if origin is list:
        item = typing.get_args(tp)[0]
        return [_load(item, r) for r in raw]
    if origin is dict:
        return dict(raw)
    if isinstance(tp, type):
        if issubclass(tp, Model):
            return tp.from_dict(raw)
        if issubclass(tp, enum.Enum):
            return tp(raw)
        if issubclass(tp, Path):
            return Path(raw)
    return raw


_PRIMITIVES = {str: "string", int: "integer", bool: "boolean", float: "number"}


def _schema_for(tp: Any) -> dict[str, Any]:
    inner = _optional_inner(tp)
    if inner is not None:
        return _schema_for(inner)
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        return {"type": "array", "items": _schema_for(typing.get_args(tp)[0])}
    if origin is dict or tp is dict:
        return {"type": "object"}
    if tp in _PRIMITIVES:
        return {"type": _PRIMITIVES[tp]}
    if isinstance(tp, type):
        if issubclass(tp, Model):
            return tp.json_schema()
        if issubclass(tp, enum.Enum):
            return {"type": "string", "enum": [m.value for m in tp]}
        if issubclass(tp, Path):
            return {"type": "string", "minLength": 1}
    return {}
