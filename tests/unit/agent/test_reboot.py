"""Reboot and resume: exit 194 from a script or a Reboot step saves state; the same command
line resumes at that step (a 194 step runs again, a Reboot step continues after itself)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.agent.helpers import Agent, bash, simple, write_doc


def once_then_reboot(marker: Path, log: Path, label: str) -> str:
    """Bash that asks for a reboot the first time and logs `label` the second time."""
    return f"if [ ! -e {marker} ]; then touch {marker}; exit 194; fi; echo {label} >> {log}"


def test_exit_194_reruns_the_step_after_the_reboot(agent: Agent, tmp_path: Path):
    log, marker = tmp_path / "log", tmp_path / "marker"
    doc = {
        "name": "reboot",
        "schemaVersion": 1.0,
        "phases": [
            {
                "name": "build",
                "steps": [
                    bash("Before", f"echo before >> {log}", "echo kept-output"),
                    bash("Kernel", once_then_reboot(marker, log, "after-reboot")),
                    bash("After", f"echo after >> {log}"),
                ],
            },
            {
                "name": "validate",
                "steps": [
                    bash("Chained", f"echo '{{{{ build.Before.outputs.stdout }}}}' >> {log}"),
                ],
            },
        ],
    }
    path = write_doc(tmp_path, doc)
    first = agent.run(path, phases="build,validate")
    assert first.code == 194
    assert first.summary["rebootRequested"] is True
    assert (tmp_path / "state" / "state.json").exists()
    assert log.read_text().split() == ["before"]

    second = agent.run(path, phases="build,validate")
    assert second.code == 0, second.stderr
    assert log.read_text().split() == ["before", "after-reboot", "after", "kept-output"]
    assert second.statuses() == {
        "build.Before": "Success",
        "build.Kernel": "Success",
        "build.After": "Success",
        "validate.Chained": "Success",
    }
    assert not (tmp_path / "state" / "state.json").exists()
    assert "resuming execution exec-1" in (second.exec_dir / "console.log").read_text()


def test_reboot_step_continues_after_itself(agent: Agent, tmp_path: Path):
    log = tmp_path / "log"
    doc = simple(
        bash("One", f"echo one >> {log}"),
        {"name": "Restart", "action": "Reboot", "inputs": {"delaySeconds": 0}},
        bash("Two", f"echo two >> {log}"),
    )
    path = write_doc(tmp_path, doc)
    assert agent.run(path).code == 194
    assert log.read_text().split() == ["one"]
    second = agent.run(path)
    assert second.code == 0, second.stderr
    assert log.read_text().split() == ["one", "two"]
    assert second.step("Restart")["status"] == "Success"


def test_reboot_inside_a_loop_resumes_at_that_iteration(agent: Agent, tmp_path: Path):
    log, marker = tmp_path / "log", tmp_path / "marker"
    script = (
        f'if [ "{{{{ loop.value }}}}" = y ] && [ ! -e {marker} ]; then '
        f"touch {marker}; exit 194; fi; echo {{{{ loop.value }}}} >> {log}"
    )
    doc = simple(bash("Each", script, loop={"forEach": ["x", "y", "z"]}))
    path = write_doc(tmp_path, doc)
    assert agent.run(path).code == 194
    assert agent.run(path).code == 0
    assert log.read_text().split() == ["x", "y", "z"]


def test_reboot_inside_a_nested_document(agent: Agent, tmp_path: Path):
    log = tmp_path / "log"
    inner = simple(
        bash("InnerOne", f"echo inner-one >> {log}"),
        {"name": "Restart", "action": "Reboot"},
        bash("InnerTwo", f"echo inner-two >> {log}"),
    )
    write_doc(tmp_path, inner, "inner.yml")
    outer = simple(
        {"name": "Nested", "action": "ExecuteDocument", "inputs": {"document": "inner.yml"}},
        bash("OuterAfter", f"echo outer-after >> {log}"),
    )
    path = write_doc(tmp_path, outer, "outer.yml")
    assert agent.run(path).code == 194
    result = agent.run(path)
    assert result.code == 0, result.stderr
    assert log.read_text().split() == ["inner-one", "inner-two", "outer-after"]
    nested_steps = result.step("Nested")["documents"][0]["phases"][0]["steps"]
    assert [s["status"] for s in nested_steps] == ["Success", "Success", "Success"]


def test_resume_refuses_changed_documents_or_another_execution(agent: Agent, tmp_path: Path):
    doc = simple({"name": "Restart", "action": "Reboot"}, bash("After", "true"))
    path = write_doc(tmp_path, doc)
    assert agent.run(path).code == 194
    other = agent.run(path, execution_id="exec-other")
    assert other.code == 2 and "unfinished execution exec-1" in other.stderr
    doc["phases"][0]["steps"].append(bash("New", "true"))
    write_doc(tmp_path, doc)
    changed = agent.run(path)
    assert changed.code == 2 and "saved state belongs to other documents" in changed.stderr
    kept = json.loads((agent.log_dir / "exec-1" / "detailedoutput.json").read_text())
    assert kept["status"] == "RebootRequested", "a refused resume must not clobber the report"
