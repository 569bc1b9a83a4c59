"""Loops (for, forEach list and mapping, named), `if` conditions and every comparison operator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from vmbuild_agent.expressions import check_condition, evaluate

from tests.unit.agent.helpers import Agent, bash, simple, write_doc


def test_loop_forms(agent: Agent, tmp_path: Path):
    out = tmp_path / "out"
    doc = simple(
        bash(
            "Up",
            f"echo up {{{{ loop.index }}}}={{{{ loop.value }}}} >> {out}",
            loop={"for": {"start": 1, "end": 5, "updateBy": 2}},
        ),
        bash(
            "Down",
            f"echo down {{{{ loop.value }}}} >> {out}",
            loop={"for": {"start": 2, "end": 1, "updateBy": -1}},
        ),
        bash("List", f"echo list {{{{ loop.value }}}} >> {out}", loop={"forEach": ["a", "b c"]}),
        bash(
            "Split",
            f"echo split {{{{ loop.value }}}} >> {out}",
            loop={"forEach": {"list": "x;y", "delimiter": ";"}},
        ),
        bash(
            "Named",
            f"echo named {{{{ item.index }}}} {{{{ item.value }}}} >> {out}",
            loop={"name": "item", "forEach": ["{{ build.List.outputs.stdout }}"]},
        ),
    )
    result = agent.run(doc)
    assert result.code == 0, result.stderr
    assert out.read_text().splitlines() == [
        "up 0=1",
        "up 1=3",
        "up 2=5",
        "down 2",
        "down 1",
        "list a",
        "list b c",
        "split x",
        "split y",
        "named 0",
    ]
    assert result.step("Up")["loop"] == {"iterations": 3}
    assert result.step("Split")["inputs"]["commands"] == [f"echo split y >> {out}"]


def test_loop_over_a_chained_list(agent: Agent, tmp_path: Path):
    folder = tmp_path / "files"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text(name)
    out = tmp_path / "seen"
    doc = simple(
        {"name": "List", "action": "ListFiles", "inputs": [{"path": str(folder)}]},
        bash(
            "Each",
            f"basename {{{{ loop.value }}}} >> {out}",
            loop={"forEach": "{{ build.List.outputs.files }}"},
        ),
    )
    result = agent.run(doc)
    assert result.code == 0, result.stderr
    assert out.read_text().split() == ["a.txt", "b.txt"]


def _cond_step(name: str, cond: dict, out: Path) -> dict:
    return bash(name, f"echo {name} >> {out}", **{"if": cond})


def test_if_then_else_and_logic(agent: Agent, tmp_path: Path):
    out = tmp_path / "ran"
    doc = simple(
        _cond_step("RunsWhenTrue", {"stringEquals": "linux", "value": "{{ os }}"}, out),
        _cond_step("SkippedWhenFalse", {"stringEquals": "windows", "value": "{{ os }}"}, out),
        _cond_step("ElseExecute", {"numberGreaterThan": 5, "value": 1, "else": "Execute"}, out),
        _cond_step("ThenSkip", {"fileExists": str(tmp_path), "then": "Skip"}, out),
        _cond_step(
            "And", {"and": [{"binaryExists": "bash"}, {"not": {"folderExists": "/nope"}}]}, out
        ),
        _cond_step("Or", {"or": [{"stringIsEmpty": "x"}, {"stringIsWhitespace": "  "}]}, out),
        _cond_step("Aborts", {"stringEquals": "a", "value": "a", "then": "Abort"}, out)
        | {"onFailure": "Ignore"},
    )
    doc["parameters"] = [{"os": {"type": "string", "default": "linux"}}]
    result = agent.run(doc)
    assert result.code == 0, result.stderr
    assert out.read_text().split() == ["RunsWhenTrue", "ElseExecute", "And", "Or"]
    statuses = result.statuses()
    assert statuses["build.SkippedWhenFalse"] == "Skipped"
    assert statuses["build.ThenSkip"] == "Skipped"
    assert statuses["build.Aborts"] == "IgnoredFailure"
    assert "Abort" in result.step("Aborts")["failureMessage"]


def _sha(path: Path, algo: str) -> str:
    return hashlib.new(algo, path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ({"stringEquals": "Hello", "value": "hello"}, True),
        ({"stringEquals": "Hello", "value": "hello "}, False),
        ({"stringLessThan": "b", "value": "a"}, True),
        ({"stringLessThanEquals": "a", "value": "a"}, True),
        ({"stringGreaterThan": "a", "value": "b"}, True),
        ({"stringGreaterThanEquals": "b", "value": "a"}, False),
        ({"patternMatches": "^v[0-9]+$", "value": "v12"}, True),
        ({"patternMatches": "^v[0-9]+$", "value": "x12"}, False),
        ({"numberEquals": 1, "value": "1.0"}, True),
        ({"numberLessThan": 10, "value": 3}, True),
        ({"numberLessThanEquals": 3, "value": 4}, False),
        ({"numberGreaterThan": 3, "value": 4}, True),
        ({"numberGreaterThanEquals": 3, "value": "a10"}, False),
        ({"stringIsEmpty": ""}, True),
        ({"stringIsWhitespace": ""}, False),
        ({"binaryExists": "no-such-binary-here"}, False),
        ({"folderExists": "/"}, True),
        ({"fileExists": "/"}, False),
    ],
)
def test_comparison_operators(expr: dict, expected: bool):
    assert check_condition(expr) == []
    assert evaluate(expr) is expected


def test_file_hash_operators_through_assert(agent: Agent, tmp_path: Path):
    target = tmp_path / "blob"
    target.write_bytes(b"vmbuild\n")
    steps = [
        {
            "name": f"Hash{algo}",
            "action": "Assert",
            "inputs": {op: _sha(target, algo), "path": str(target)},
        }
        for op, algo in (
            ("fileMD5Equals", "md5"),
            ("fileSHA1Equals", "sha1"),
            ("fileSHA256Equals", "sha256"),
            ("fileSHA512Equals", "sha512"),
        )
    ]
    steps.append(
        {
            "name": "Wrong",
            "action": "Assert",
            "onFailure": "Ignore",
            "inputs": {"fileSHA256Equals": "0" * 64, "path": str(target)},
        }
    )
    result = agent.run(simple(*steps))
    assert result.code == 0, result.stderr
    assert result.statuses()["build.Wrong"] == "IgnoredFailure"
    assert "assertion failed: fileSHA256Equals" in result.step("Wrong")["failureMessage"]
    assert all(result.step(s["name"])["status"] == "Success" for s in steps[:4])


def test_nesting_depth_of_conditions_is_limited(agent: Agent, tmp_path: Path):
    deep = {"not": {"not": {"not": {"not": {"not": {"stringIsEmpty": ""}}}}}}
    doc = simple(bash("Deep", "true", **{"if": deep}))
    code, report = agent.validate(write_doc(tmp_path, doc))
    assert code == 2 and "nest at most 4 levels" in report["problems"][0]["message"]


def test_for_loops_are_lazy_and_inclusive():
    from vmbuild_agent.document import loop_iterations

    huge = loop_iterations({"for": {"start": 1, "end": 10**12, "updateBy": 1}})
    assert len(huge) == 10**12 and huge[-1] == 10**12
    assert list(loop_iterations({"for": {"start": 3, "end": 3, "updateBy": 0}})) == [3]
    assert list(loop_iterations({"forEach": {"list": "a|b", "delimiter": "|"}})) == ["a", "b"]
