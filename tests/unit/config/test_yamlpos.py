from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vmbuild.config.yamlpos import load_yaml


def test_lines_of_keys_and_values(tmp_path: Path):
    path = tmp_path / "x.yml"
    path.write_text("a: 1\nb:\n  c: [x, y]\n  d:\n    - e: 2\non: yes\n")
    data, pos, problems = load_yaml(path)
    assert data == {"a": 1, "b": {"c": ["x", "y"], "d": [{"e": 2}]}, "on": True}
    assert problems == []
    assert pos.line(("a",)) == 1
    assert pos.line(("b",)) == 2
    assert pos.line(("b", "c", 1)) == 3
    assert pos.line(("b", "d", 0)) == 5
    assert pos.line(("b", "d", 0, "e")) == 5
    assert pos.line(("b", "d", 0, "missing")) == 5  # nearest known ancestor


def test_duplicate_keys_reported(tmp_path: Path):
    path = tmp_path / "x.yml"
    path.write_text("a: 1\nb: {c: 1}\na: 2\n")
    data, _, problems = load_yaml(path)
    assert data["a"] == 1
    assert [(p.line, p.path, p.message) for p in problems] == [
        (3, ("a",), "duplicate key (first at line 1)")
    ]


def test_syntax_error_has_mark(tmp_path: Path):
    path = tmp_path / "x.yml"
    path.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(yaml.MarkedYAMLError) as info:
        load_yaml(path)
    assert info.value.problem_mark is not None


def test_multiple_documents_rejected(tmp_path: Path):
    path = tmp_path / "x.yml"
    path.write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(yaml.YAMLError):
        load_yaml(path)
