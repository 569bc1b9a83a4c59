"""Helpers for the agent tests: write a document, run the real agent CLI in a subprocess."""
# The `agent` fixture is re-exported by conftest.py.

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

AGENT_DIR = Path(__file__).resolve().parents[3] / "guest-agent"
if str(AGENT_DIR) not in sys.path:  # unit tests of pure functions import the agent package
    sys.path.insert(0, str(AGENT_DIR))


@dataclass
class AgentResult:
    code: int
    stdout: str
    stderr: str
    log_dir: Path

    @property
    def summary(self) -> dict:
        return json.loads(self.stdout)

    @property
    def exec_dir(self) -> Path:
        return Path(self.summary["logDirectory"])

    @property
    def detailed(self) -> dict:
        return json.loads((self.exec_dir / "detailedoutput.json").read_text())

    def step(self, name: str, doc: int = 0) -> dict:
        """The detailed record of the step called `name` (first match, any phase)."""
        for phase in self.detailed["documents"][doc]["phases"]:
            for step in phase["steps"]:
                if step["name"] == name:
                    return step
        raise KeyError(name)

    def statuses(self, doc: int = 0) -> dict:
        return {
            f"{ph['name']}.{st['name']}": st["status"]
            for ph in self.detailed["documents"][doc]["phases"]
            for st in ph["steps"]
        }


def write_doc(folder: Path, doc: dict | str, name: str = "doc.yml") -> Path:
    """A component document file (dicts are written as YAML, or JSON for *.json)."""
    path = folder / name
    if isinstance(doc, str):
        path.write_text(doc)
    elif name.endswith(".json"):
        path.write_text(json.dumps(doc, indent=1))
    else:
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def simple(*steps: dict, phase: str = "build", **extra: Any) -> dict:
    """A one-phase document around `steps`."""
    return {
        "name": "test-doc",
        "schemaVersion": 1.0,
        **extra,
        "phases": [{"name": phase, "steps": list(steps)}],
    }


def bash(name: str, *commands: str, **extra: Any) -> dict:
    return {"name": name, "action": "ExecuteBash", "inputs": {"commands": list(commands)}, **extra}


class Agent:
    """Runs `python3 -m vmbuild_agent` from guest-agent/ (the same code as the zipapp)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.log_dir = tmp_path / "logs"

    def cli(
        self, *args: str, env: dict | None = None, timeout: float = 120, input: str | None = None
    ) -> AgentResult:
        full_env = {**os.environ, "PYTHONPATH": str(AGENT_DIR), **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "vmbuild_agent", *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            input=input,
        )
        return AgentResult(proc.returncode, proc.stdout, proc.stderr, self.log_dir)

    def run(
        self,
        doc: dict | str | Path,
        *more: str,
        phases: str = "build,validate,test",
        env: dict | None = None,
        execution_id: str = "exec-1",
        timeout: float = 120,
        input: str | None = None,
    ) -> AgentResult:
        path = doc if isinstance(doc, Path) else write_doc(self.tmp, doc)
        return self.cli(
            "run",
            "--documents",
            str(path),
            "--phases",
            phases,
            "--log-directory",
            str(self.log_dir),
            "--state-directory",
            str(self.tmp / "state"),
            "--execution-id",
            execution_id,
            *more,
            env=env,
            timeout=timeout,
            input=input,
        )

    def validate(self, *paths: Path, extra: tuple = ()) -> tuple[int, dict]:
        result = self.cli("validate", "--json", "--documents", ",".join(map(str, paths)), *extra)
        return result.code, json.loads(result.stdout)


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return Agent(tmp_path)
