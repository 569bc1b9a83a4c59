"""Action modules: one class per AWSTOE action, grouped in one module per family.

An action declares the shape of its `inputs` (a list of items, or one mapping) and the
fields each item takes; the base class checks them before anything runs, and `run` gets
inputs with placeholders already substituted. Outputs are a dict (AWSTOE's names).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

from vmbuild_agent.errors import StepFailed
from vmbuild_agent.expressions import has_placeholder

REGISTRY: dict[str, type[Action]] = {}
# Which module defines each action, so a run imports only the families its steps use
# (every import costs under TCG). A unit test keeps this in step with the modules.
FAMILY_OF: dict[str, str] = {
    **dict.fromkeys(("ExecuteBash", "ExecuteBinary", "ExecuteDocument"), "execute"),
    **dict.fromkeys(
        (
            "CreateFile",
            "AppendFile",
            "CopyFile",
            "CopyFolder",
            "MoveFile",
            "MoveFolder",
            "DeleteFile",
            "DeleteFolder",
            "CreateFolder",
            "CreateSymlink",
            "ListFiles",
            "ReadFile",
            "SetFileEncoding",
        ),
        "files",
    ),
    **dict.fromkeys(
        ("SetFileOwner", "SetFolderOwner", "SetFilePermissions", "SetFolderPermissions"),
        "permissions",
    ),
    "WebDownload": "web",
    **dict.fromkeys(("S3Download", "S3Upload"), "s3"),
    **dict.fromkeys(("UpdateOS", "Reboot"), "system"),
    "Assert": "assertion",
}
_FAMILIES = tuple(dict.fromkeys(FAMILY_OF.values()))
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


@dataclass(frozen=True)
class Field:
    """One input key: its type ('string', 'bool', 'int', 'list', 'any'), need and default."""

    type: str = "string"
    required: bool = False
    default: Any = None


def register(cls: type[Action]) -> type[Action]:
    REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Action]]:
    """Import every family module once so their actions register themselves."""
    for family in _FAMILIES:
        importlib.import_module(f"vmbuild_agent.actions.{family}")
    return REGISTRY


def get(name: str) -> type[Action] | None:
    """The action class called `name` (None if there is none), importing its module."""
    family = FAMILY_OF.get(name)
    if family is None:
        return None
    importlib.import_module(f"vmbuild_agent.actions.{family}")
    return REGISTRY.get(name)


def _type_problem(key: str, value: Any, spec: Field) -> str | None:
    if value is None or has_placeholder(value):
        return None
    if spec.type == "string" and not isinstance(value, (str, int, float)):
        return f"input '{key}' must be a string"
    if spec.type == "bool" and not (
        isinstance(value, bool) or (isinstance(value, str) and value.lower() in _TRUE | _FALSE)
    ):
        return f"input '{key}' must be true or false"
    if spec.type == "int":
        try:
            int(value)
        except (TypeError, ValueError):
            return f"input '{key}' must be an integer"
    if spec.type == "list" and not isinstance(value, list):
        return f"input '{key}' must be a list"
    return None


def as_bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


class Action:
    """Base of every action: input checking, then `run` for the shared flow."""

    name: ClassVar[str] = ""
    #: "list": a list of items (a single mapping is taken as a one-item list);
    #: "mapping": one mapping; "any": the action checks its own inputs.
    shape: ClassVar[str] = "list"
    fields: ClassVar[dict[str, Field]] = {}
    #: output names other steps may chain to (None: not declared, so not checked)
    outputs: ClassVar[tuple[str, ...] | None] = ()

    def check(self, inputs: Any) -> list[str]:
        """Problems with the (unsubstituted) inputs; empty when they are fine."""
        if self.shape == "any":
            return []
        if has_placeholder(inputs):
            return []
        items = self.items(inputs)
        if items is None:
            want = "a list of mappings" if self.shape == "list" else "a mapping"
            return [f"inputs of {self.name} must be {want}"]
        problems: list[str] = []
        for index, item in enumerate(items):
            where = f"inputs[{index}]: " if self.shape == "list" and len(items) > 1 else ""
            if not isinstance(item, dict):
                problems.append(f"{where}each item of {self.name} inputs must be a mapping")
                continue
            unknown = sorted(set(map(str, item)) - set(self.fields))
            if unknown:
                problems.append(
                    f"{where}unknown input(s) {', '.join(unknown)} for {self.name} "
                    f"(known: {', '.join(sorted(self.fields))})"
                )
            for key, spec in self.fields.items():
                if spec.required and (key not in item or item[key] in (None, "")):
                    problems.append(f"{where}missing required input '{key}' for {self.name}")
                elif key in item:
                    problem = _type_problem(key, item[key], spec)
                    if problem:
                        problems.append(where + problem)
        return problems

    def items(self, inputs: Any) -> list | None:
        """Inputs as a list of items (None when the shape is wrong)."""
        if inputs is None:
            inputs = {} if self.shape == "mapping" else []
        if self.shape == "mapping":
            if isinstance(inputs, list) and len(inputs) == 1:
                inputs = inputs[0]
            return [inputs] if isinstance(inputs, dict) else None
        if isinstance(inputs, dict):
            return [inputs]
        return inputs if isinstance(inputs, list) else None

    def with_defaults(self, item: dict) -> dict:
        merged = {k: spec.default for k, spec in self.fields.items()}
        merged.update({k: v for k, v in item.items() if v is not None})
        return merged

    def run(self, inputs: Any, ctx: Any) -> dict:
        items = self.items(inputs)
        if items is None:
            raise StepFailed(f"inputs of {self.name} have the wrong shape after substitution")
        results = [self.run_item(self.with_defaults(item), ctx) for item in items]
        return self.combine(results)

    def run_item(self, item: dict, ctx: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def combine(self, results: list) -> dict:
        """Outputs of the step from the per-item results (none by default)."""
        return {}
