"""YAML loading that remembers where every key and value came from.

PyYAML's composed node tree carries line marks; building plain data from it by
hand lets us record, for each JSON path, the line of its value and of its key,
and report duplicate keys (which PyYAML would silently overwrite).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

JsonPath = tuple[str | int, ...]
# libyaml's parser when PyYAML was built with it: same nodes and marks, several times faster.
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Positions:
    """1-based line numbers by JSON path: of values, and of mapping keys."""

    values: dict[JsonPath, int] = field(default_factory=dict)
    keys: dict[JsonPath, int] = field(default_factory=dict)

    def line(self, path: JsonPath) -> int | None:
        """Line of `path`'s key (where a block mapping's value starts is the line after),
        else of its value, else of its nearest known ancestor."""
        if path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return None


@dataclass(frozen=True)
class YamlProblem:
    line: int | None
    path: JsonPath
    message: str


class _Builder:
    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.positions = Positions()
        self.problems: list[YamlProblem] = []

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.positions.values[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves `<<` merge keys
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(YamlProblem(line, path, "keys must be plain strings"))
                    continue
                # The raw scalar text, so `on:`/`yes:` stay strings instead of turning into True.
                key = str(key_node.value)
                if key in result:
                    first = self.positions.keys.get((*path, key))
                    self.problems.append(
                        YamlProblem(line, (*path, key), f"duplicate key (first at line {first})")
                    )
                    continue
                self.positions.keys[(*path, key)] = line
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def load_yaml(path: Path) -> tuple[Any, Positions, list[YamlProblem]]:
    """Parse one YAML document; returns data, positions and duplicate-key problems.

    Raises yaml.YAMLError (with a `problem_mark`) on syntax errors and OSError when
    the file cannot be read.
    """
    text = path.read_text(encoding="utf-8")
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, Positions(), []
        builder = _Builder(loader)
        data = builder.build(node, ())
        return data, builder.positions, builder.problems
    finally:
        loader.dispose()
