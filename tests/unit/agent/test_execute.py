"""ExecuteBash/ExecuteBinary/ExecuteDocument, chaining, onFailure, timeouts, retries, reports."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.unit.agent.helpers import Agent, bash, simple, write_doc


def test_output_streams_to_stderr_and_console_log_and_only_json_goes_to_stdout(agent: Agent):
    doc = {
        "name": "chain",
        "schemaVersion": 1.0,
        "constants": [{"greeting": {"type": "string", "value": "hello"}}],
        "parameters": [{"who": {"type": "string", "default": "world"}}],
        "phases": [
            {
                "name": "build",
                "steps": [bash("Say", "echo '{{ greeting }} {{ who }}'", "echo err >&2")],
            },
            {
                "name": "validate",
                "steps": [
                    bash("Repeat", "echo 'again: {{ build.Say.outputs.stdout }}'"),
                    bash("Inputs", "echo '{{ build.Say.inputs.commands[1] }}'"),
                ],
            },
        ],
    }
    result = agent.run(doc, "--parameters", "who=vmbuild")
    assert result.code == 0, result.stderr
    summary = result.summary  # stdout parses as one JSON document
    assert summary["status"] == "Success" and summary["rebootRequested"] is False
    assert "hello vmbuild" in result.stderr and "err" in result.stderr
    assert "==> [chain/build/Say] start (ExecuteBash)" in result.stderr
    console = (result.exec_dir / "console.log").read_text()
    assert "again: hello vmbuild" in console
    assert result.step("Say")["outputs"] == {"stdout": "hello vmbuild"}
    assert result.step("Repeat")["inputs"] == {"commands": ["echo 'again: hello vmbuild'"]}
    assert result.step("Inputs")["outputs"]["stdout"] == "echo err >&2"
    detailed = result.detailed
    assert detailed["executionId"] == "exec-1"
    step = detailed["documents"][0]["phases"][0]["steps"][0]
    assert set(step) >= {
        "name",
        "action",
        "status",
        "startTime",
        "endTime",
        "inputs",
        "outputs",
        "failureMessage",
    }
    copies = sorted(p.name for p in (result.exec_dir / "documents").iterdir())
    assert copies == ["01-doc.yml", "parameters.json"]


def test_failure_message_has_exit_code_and_stderr_and_abort_stops(agent: Agent):
    doc = simple(
        bash("Fails", "echo some output", "echo 'disk on fire' >&2", "exit 3"),
        bash("NeverRuns", "echo nope"),
    )
    result = agent.run(doc)
    assert result.code == 1
    failed = result.step("Fails")
    assert failed["status"] == "Failed"
    assert "exit code 3" in failed["failureMessage"]
    assert "disk on fire" in failed["failureMessage"]
    assert "NeverRuns" not in result.statuses()
    assert result.summary["documents"][0]["phases"][0]["status"] == "Failed"
    assert result.summary["status"] == "Failed"


def test_on_failure_continue_and_ignore(agent: Agent):
    doc = simple(
        bash("Ignored", "exit 1", onFailure="Ignore"),
        bash("AfterIgnore", "echo ok"),
    )
    result = agent.run(doc)
    assert result.code == 0
    assert result.statuses() == {"build.Ignored": "IgnoredFailure", "build.AfterIgnore": "Success"}
    assert result.summary["status"] == "SuccessWithIgnoredFailure"
    assert result.detailed["documents"][0]["phases"][0]["status"] == "SuccessWithIgnoredFailure"

    doc = {
        "name": "c",
        "schemaVersion": 1.0,
        "phases": [
            {
                "name": "build",
                "steps": [bash("Bad", "exit 1", onFailure="Continue"), bash("Next", "true")],
            },
            {"name": "validate", "steps": [bash("Later", "true")]},
        ],
    }
    result = agent.run(doc, execution_id="exec-2")
    assert result.code == 1
    assert result.statuses() == {"build.Bad": "Failed", "build.Next": "Success"}
    assert result.summary["documents"][0]["phases"][0]["status"] == "Failed"


def test_timeout_kills_the_step_and_its_children(agent: Agent, tmp_path: Path):
    pidfile = tmp_path / "child.pid"
    doc = simple(bash("Slow", f"sleep 300 & echo $! > {pidfile}; wait", timeoutSeconds=1))
    result = agent.run(doc, timeout=60)
    assert result.code == 1
    assert "timed out" in result.step("Slow")["failureMessage"]
    pid = int(pidfile.read_text())
    assert (
        not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


def test_timeout_applies_to_python_actions_too(agent: Agent):
    doc = simple(
        {"name": "Wait", "action": "Reboot", "inputs": {"delaySeconds": 30}, "timeoutSeconds": 1}
    )
    result = agent.run(doc, timeout=60)
    assert result.code == 1, "a timed-out Reboot must fail, not request a reboot"
    assert "timed out" in result.step("Wait")["failureMessage"]


def test_max_attempts_retries_until_success(agent: Agent, tmp_path: Path):
    counter = tmp_path / "count"
    doc = simple(
        bash(
            "Flaky",
            f"n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}",
            "[ $n -ge 3 ] || { echo attempt $n failed >&2; exit 1; }",
            maxAttempts=3,
        ),
        bash("GivesUp", "exit 7", maxAttempts=2, onFailure="Ignore"),
    )
    result = agent.run(doc)
    assert result.code == 0, result.stderr
    assert counter.read_text().strip() == "3"
    assert result.step("Flaky")["status"] == "Success"
    assert "after 2 attempts" in result.step("GivesUp")["failureMessage"]
    assert "attempt 1/3 failed" in result.stderr


def test_execute_binary_with_arguments(agent: Agent, tmp_path: Path):
    doc = simple(
        {
            "name": "Printf",
            "action": "ExecuteBinary",
            "inputs": {"path": "printf", "arguments": ["%s-%s", "a", "b"]},
        },
        {
            "name": "Missing",
            "action": "ExecuteBinary",
            "inputs": {"path": str(tmp_path / "nope")},
            "onFailure": "Ignore",
        },
    )
    result = agent.run(doc)
    assert result.code == 0
    assert result.step("Printf")["outputs"]["stdout"] == "a-b"
    assert "binary not found" in result.step("Missing")["failureMessage"]


def test_nested_documents_with_parameters_and_depth_limit(agent: Agent, tmp_path: Path):
    out = tmp_path / "nested.txt"
    inner = simple(bash("Write", f"echo '{{{{ word }}}}' >> {out}"))
    inner["parameters"] = [{"word": {"type": "string"}}]
    write_doc(tmp_path, inner, "inner.yml")
    outer = simple(
        {
            "name": "RunInner",
            "action": "ExecuteDocument",
            "inputs": {
                "document": "inner.yml",
                "phases": "build",
                "parameters": [{"name": "word", "value": "from-outer"}],
            },
        }
    )
    result = agent.run(write_doc(tmp_path, outer, "outer.yml"))
    assert result.code == 0, result.stderr
    assert out.read_text() == "from-outer\n"
    nested = result.step("RunInner")["documents"][0]
    assert nested["phases"][0]["steps"][0]["status"] == "Success"

    # five levels: deeper than the limit of three
    for level in range(5):
        target = f"level{level + 1}.yml"
        step = {"name": "Down", "action": "ExecuteDocument", "inputs": {"document": target}}
        write_doc(
            tmp_path, simple(step if level < 4 else bash("Leaf", "true")), f"level{level}.yml"
        )
    code, report = agent.validate(tmp_path / "level0.yml")
    assert code == 2
    assert any("nests deeper than 3" in p["message"] for p in report["problems"])


def test_nested_document_failure_fails_the_step(agent: Agent, tmp_path: Path):
    write_doc(tmp_path, simple(bash("Boom", "echo broken >&2; exit 4")), "inner.yml")
    outer = simple(
        {"name": "RunInner", "action": "ExecuteDocument", "inputs": {"document": "inner.yml"}}
    )
    result = agent.run(write_doc(tmp_path, outer, "outer.yml"))
    assert result.code == 1
    message = result.step("RunInner")["failureMessage"]
    assert "build.Boom" in message and "exit code 4" in message


def test_multiple_documents_and_parameters_file(agent: Agent, tmp_path: Path):
    one = simple(bash("One", "echo {{ p }}"), name="one")
    one["parameters"] = [{"p": {"type": "string"}}]
    two = simple(bash("Two", "echo {{ p }}"), name="two")
    two["parameters"] = [{"p": {"type": "string"}}]
    a, b = write_doc(tmp_path, one, "one.yml"), write_doc(tmp_path, two, "two.json")
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"one": {"p": "first"}, str(b): {"p": "second"}}))
    result = agent.run(Path(f"{a},{b}"), "--parameters-file", str(params))
    assert result.code == 0, result.stdout + result.stderr
    assert result.step("One", doc=0)["outputs"]["stdout"] == "first"
    assert result.step("Two", doc=1)["outputs"]["stdout"] == "second"
    assert [d["name"] for d in result.summary["documents"]] == ["one", "two"]


def test_zipapp_runs_the_same_document(agent: Agent, tmp_path: Path):
    import subprocess
    import sys

    from tests.unit.agent.helpers import AGENT_DIR

    pyz = tmp_path / "vmbuild-agent.pyz"
    subprocess.run(
        [sys.executable, str(AGENT_DIR / "build.py"), "--output", str(pyz)],
        check=True,
        capture_output=True,
    )
    doc = write_doc(tmp_path, simple(bash("Hi", "echo from-pyz")), "doc.json")
    proc = subprocess.run(
        [
            sys.executable,
            str(pyz),
            "run",
            "--documents",
            str(doc),
            "--phases",
            "build",
            "--log-directory",
            str(tmp_path / "logs"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "Success"
    assert "from-pyz" in proc.stderr

    # Without site-packages (no PyYAML, as on a bare guest): JSON works, YAML says why not.
    yml = write_doc(tmp_path, simple(bash("Hi", "echo yaml")), "doc.yml")
    for path, code in ((doc, 0), (yml, 2)):
        bare = subprocess.run(
            [sys.executable, "-S", str(pyz), "validate", "--json", "--documents", str(path)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""},
        )  # fmt: skip
        assert bare.returncode == code, bare.stderr
    assert "PyYAML is not installed" in bare.stdout


def test_sigterm_kills_the_running_step_and_writes_the_report(agent: Agent, tmp_path: Path):
    import signal
    import subprocess
    import sys
    import time

    from tests.unit.agent.helpers import AGENT_DIR

    pidfile = tmp_path / "child.pid"
    doc = write_doc(tmp_path, simple(bash("Slow", f"sleep 300 & echo $! > {pidfile}; wait")))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmbuild_agent", "run", "--documents", str(doc), "--phases",
         "build", "--log-directory", str(agent.log_dir), "--execution-id", "term"],
        env={**os.environ, "PYTHONPATH": str(AGENT_DIR)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 130
    pid = int(pidfile.read_text())
    alive = Path(f"/proc/{pid}").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()
    assert not alive, "the step's child survived SIGTERM"
    report = json.loads((agent.log_dir / "term" / "detailedoutput.json").read_text())
    assert report["status"] == "Failed"
