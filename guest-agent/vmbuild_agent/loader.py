"""Reading component documents (YAML through PyYAML when present, JSON always) with line numbers.

Mappings come back as `Node` (a dict) carrying the 1-based line where they start, so
validation can point at the line of a phase or a step.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vmbuild_agent.errors import InvalidInput, Problem

try:  # PyYAML is optional: cloud images ship it, the host may hand us JSON instead.
    import yaml
except ImportError:  # pragma: no cover - exercised in guests without PyYAML
    yaml = None


_NAME_KEY = re.compile(r'"name"\s*:\s*("(?:[^"\\]|\\.)*")')


class Node(dict):
    """A mapping that remembers the line it started on (None when unknown)."""

    line: int | None = None


def line_of(value: Any) -> int | None:
    return getattr(value, "line", None)


if yaml is not None:

    class _LineLoader(yaml.SafeLoader):  # type: ignore[misc,name-defined]
        """SafeLoader that builds `Node` mappings with their start line."""

    def _construct_mapping(loader: Any, node: Any, deep: bool = False) -> Node:
        loader.flatten_mapping(node)
        mapping = Node()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.line = node.start_mark.line + 1
        return mapping

    _LineLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
        _construct_mapping,
    )


def _json_with_lines(text: str) -> Any:
    """Parse JSON; mappings get the line of their `"name"` key when one can be found."""
    data = json.loads(text, object_hook=Node)
    # Every `"name": "<value>"` with its line, in order: one scan of the whole text.
    seen: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in _NAME_KEY.finditer(line):
            try:
                seen.append((number, json.loads(match.group(1))))
            except ValueError:
                continue
    position = 0

    def find(name: str, start: int) -> int | None:
        nonlocal position
        for index in range(position, len(seen)):
            number, value = seen[index]
            if number > start and value == name:
                position = index + 1
                return number
        return None

    cursor = 0

    def walk(value: Any) -> None:
        nonlocal cursor
        if isinstance(value, Node):
            if isinstance(value.get("name"), str):
                found = find(value["name"], cursor)
                if found:
                    value.line = found
                    cursor = found - 1
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return data


def parse_text(text: str, source: str) -> Any:
    """Parse a document's text: JSON when it looks like JSON, YAML otherwise."""
    stripped = text.lstrip()
    if source.endswith(".json") or stripped.startswith("{"):
        try:
            return _json_with_lines(text)
        except json.JSONDecodeError as exc:
            if source.endswith(".json") or yaml is None:
                raise InvalidInput(
                    f"{source}: invalid JSON",
                    [Problem(source, f"invalid JSON: {exc.msg}", line=exc.lineno)],
                ) from None
    if yaml is None:
        raise InvalidInput(
            f"{source}: YAML needs PyYAML",
            [
                Problem(
                    source, "this is YAML but PyYAML is not installed; pass the document as JSON"
                )
            ],
        )
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(
            f"{source}: invalid YAML", [Problem(source, f"invalid YAML: {reason}", line=line)]
        ) from None


def load_file(path: Path) -> tuple[Any, str]:
    """Read and parse one document file; returns (data, raw text)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"{path}: cannot read", [Problem(str(path), f"cannot read: {exc.strerror}")]
        ) from None
    return parse_text(text, str(path)), text
