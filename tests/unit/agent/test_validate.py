"""Validation: every problem is reported (document, phase, step, line) and nothing runs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.agent.helpers import Agent, bash, simple, write_doc

BAD = """\
name: bad
schemaVersion: 1.0
parameters:
  - needed:
      type: string
phases:
  - name: build
    steps:
      - name: First
        action: ExecuteBash
        inputs:
          commands: ["touch {marker}"]
      - name: Unknown
        action: NoSuchAction
      - name: NoInputs
        action: ExecuteBinary
        inputs: {{}}
      - name: Forever
        action: ExecuteBash
        loop:
          for: {{start: 1, end: 5, updateBy: -1}}
        inputs:
          commands: ["echo {{{{ loop.value }}}}"]
      - name: Early
        action: ExecuteBash
        inputs:
          commands: ["echo {{{{ build.Later.outputs.stdout }}}}"]
      - name: Later
        action: ExecuteBash
        timeoutSeconds: soon
        inputs:
          commands: ["echo {{{{ undefined_param }}}}"]
      - name: Later
        action: ExecuteBash
        inputs:
          commands: [x]
"""


def test_every_problem_is_reported_with_its_line_and_nothing_runs(agent: Agent, tmp_path: Path):
    marker = tmp_path / "ran"
    path = write_doc(tmp_path, BAD.format(marker=marker))
    code, report = agent.validate(path)
    assert code == 2 and report["valid"] is False
    found: dict = {}
    for p in report["problems"]:
        found[(p["step"], p["line"])] = found.get((p["step"], p["line"]), "") + p["message"]
    messages = " | ".join(p["message"] for p in report["problems"])
    assert "unknown action 'NoSuchAction'" in found[("Unknown", 13)]
    assert "missing required input 'path'" in found[("NoInputs", 15)]
    assert "loop never ends" in found[("Forever", 18)]
    assert "has not run yet" in found[("Early", 24)]
    assert "timeoutSeconds" in found[("Later", 28)]
    assert "unknown parameter or constant {{ undefined_param }}" in messages
    assert "duplicate step name 'Later'" in messages
    assert "missing required parameter 'needed'" in messages
    assert all(p["document"] == str(path) for p in report["problems"])
    assert all(p["phase"] == "build" for p in report["problems"] if p["step"])

    result = agent.run(path)
    assert result.code == 2
    assert result.summary["status"] == "Invalid"
    assert "missing required parameter 'needed'" in result.stdout
    assert not marker.exists(), "validation failed, yet a step ran"


def test_bad_top_level_and_phase_shapes(agent: Agent, tmp_path: Path):
    doc = {
        "name": "x",
        "schemaVersion": "2.0",
        "extra": 1,
        "phases": [
            {"name": "build", "steps": []},
            {"name": "deploy", "steps": [bash("A", "true")]},
            {"name": "test", "steps": [bash("A", "true", onFailure="Maybe", maxAttempts=0)]},
        ],
    }
    code, report = agent.validate(write_doc(tmp_path, doc))
    messages = [p["message"] for p in report["problems"]]
    assert code == 2
    assert any("unsupported schemaVersion" in m for m in messages)
    assert any("unknown top-level key 'extra'" in m for m in messages)
    assert any("'steps' must be a non-empty list" in m for m in messages)
    assert any("phase name must be one of" in m for m in messages)
    assert any("onFailure must be one of" in m for m in messages)
    assert any("maxAttempts" in m for m in messages)


def test_input_types_and_unknown_inputs(agent: Agent, tmp_path: Path):
    doc = simple(
        {"name": "A", "action": "ExecuteBash", "inputs": {"commands": "echo not-a-list"}},
        {"name": "B", "action": "CreateFile", "inputs": [{"path": "/tmp/x", "colour": "red"}]},
        {"name": "C", "action": "DeleteFolder", "inputs": [{"path": "/tmp/x", "force": "maybe"}]},
        {"name": "D", "action": "Assert", "inputs": {"stringEquals": "a"}},
        {"name": "E", "action": "ExecuteBash", "if": {"bogusOp": 1}, "inputs": {"commands": []}},
    )
    code, report = agent.validate(write_doc(tmp_path, doc))
    by_step = {}
    for p in report["problems"]:
        by_step.setdefault(p["step"], []).append(p["message"])
    assert code == 2
    assert "input 'commands' must be a list" in by_step["A"][0]
    assert "unknown input(s) colour" in by_step["B"][0]
    assert "must be true or false" in by_step["C"][0]
    assert "stringEquals needs 'value'" in by_step["D"][0]
    assert "exactly one operator" in by_step["E"][0]


def test_json_document_lines_and_parameters(agent: Agent, tmp_path: Path):
    doc = simple(bash("Hello", "echo {{ who }}"))
    doc["parameters"] = [{"who": {"type": "string", "description": "name"}}]
    path = write_doc(tmp_path, doc, "doc.json")
    code, report = agent.validate(path)
    assert code == 2
    assert report["problems"][0]["message"] == "missing required parameter 'who'"
    code, report = agent.validate(path, extra=("--parameters", "who=me"))
    assert (code, report) == (0, {"valid": True, "problems": []})
    code, report = agent.validate(path, extra=("--parameters", "who=me,stray=1"))
    assert code == 2 and "'stray' is not declared" in report["problems"][0]["message"]

    broken = write_doc(tmp_path, simple({"name": "X", "action": "Nope"}), "broken.json")
    code, report = agent.validate(broken)
    assert report["problems"][0]["line"] == 9, json.dumps(report)


def test_invalid_yaml_names_the_line(agent: Agent, tmp_path: Path):
    path = write_doc(tmp_path, "name: a\nphases:\n  - name: build\n    steps: [\n")
    code, report = agent.validate(path)
    assert code == 2
    assert report["problems"][0]["message"].startswith("invalid YAML")
    assert report["problems"][0]["line"] == 5


def test_chaining_to_a_phase_that_is_not_run(agent: Agent, tmp_path: Path):
    doc = {
        "name": "x",
        "schemaVersion": 1.0,
        "phases": [
            {"name": "build", "steps": [bash("Make", "echo hi")]},
            {"name": "validate", "steps": [bash("Use", "echo {{ build.Make.outputs.stdout }}")]},
        ],
    }
    result = agent.run(doc, phases="validate")
    assert result.code == 2
    assert "chains to phase 'build', which is not run" in result.stdout
    assert agent.run(doc, phases="build,validate").code == 0


def test_execute_document_cycles_and_missing_targets(agent: Agent, tmp_path: Path):
    def nested(target: str) -> dict:
        return simple({"name": "Run", "action": "ExecuteDocument", "inputs": {"document": target}})

    write_doc(tmp_path, nested("b.yml"), "a.yml")
    write_doc(tmp_path, nested("a.yml"), "b.yml")
    write_doc(tmp_path, nested("missing.yml"), "c.yml")
    code, report = agent.validate(tmp_path / "a.yml")
    assert code == 2 and "ExecuteDocument cycle" in report["problems"][0]["message"]
    code, report = agent.validate(tmp_path / "c.yml")
    assert code == 2 and "no such document" in report["problems"][0]["message"]
