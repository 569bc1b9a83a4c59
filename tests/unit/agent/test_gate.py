"""`--gate stdin`: the agent loads and checks its documents, then waits for a line `go`
on standard input before any step runs (vmbuild opens it once cloud-init is done)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.agent.helpers import AGENT_DIR, Agent, bash, simple

EXIT_NOT_STARTED = 3


def test_go_opens_the_gate(agent: Agent, tmp_path: Path):
    marker = tmp_path / "ran"
    result = agent.run(simple(bash("Touch", f"touch {marker}")), "--gate", "stdin",
                       phases="build", input="go\n")  # fmt: skip
    assert result.code == 0, result.stderr
    assert marker.exists()
    assert result.summary["status"] == "Success"


@pytest.mark.parametrize("given", ["", "stop\n", "gone\n"], ids=["eof", "stop", "other"])
def test_anything_but_go_keeps_it_closed_and_nothing_runs(agent: Agent, tmp_path: Path, given):
    marker = tmp_path / "ran"
    result = agent.run(simple(bash("Touch", f"touch {marker}")), "--gate", "stdin",
                       phases="build", input=given)  # fmt: skip
    assert result.code == EXIT_NOT_STARTED
    assert "gate stayed closed" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "state").exists()  # no execution state: a later run starts afresh
    assert not agent.log_dir.exists()


def test_invalid_documents_fail_without_waiting_at_the_gate(tmp_path: Path):
    """The gate comes after loading and checking: a bad document exits at once, while
    standard input stays open and silent."""
    doc = tmp_path / "bad.yml"
    doc.write_text("name: bad\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps: []\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmbuild_agent", "run", "--documents", str(doc),
         "--phases", "build", "--log-directory", str(tmp_path / "logs"), "--gate", "stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(AGENT_DIR)},
    )  # fmt: skip
    try:
        code = proc.wait(timeout=60)  # stdin stays open: waiting at the gate would time out
    finally:
        proc.kill()
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.close()
        err = proc.stderr.read()
    assert code == 2, err
