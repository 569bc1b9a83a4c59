"""One agent run per phase: only documents that have the phase, parameters keyed by path."""

from __future__ import annotations

import json
import subprocess
import sys

from vmbuild.components import agent_path, stage
from vmbuild.config import Component

WITH_TEST = """name: with-test
schemaVersion: 1.0
parameters:
  - who: {type: string}
phases:
  - name: build
    steps:
      - {name: Hi, action: ExecuteBash, inputs: {commands: ["echo build {{ who }}"]}}
  - name: test
    steps:
      - {name: Check, action: ExecuteBash, inputs: {commands: ["echo test {{ who }}"]}}
"""
BUILD_ONLY = """name: build-only
schemaVersion: 1.0
parameters:
  - n: {type: string}
phases:
  - name: build
    steps:
      - {name: Count, action: ExecuteBash, inputs: {commands: ["echo n={{ n }}"]}}
"""


def test_phase_arguments_run_through_the_real_agent(tmp_path):
    (tmp_path / "a.yml").write_text(WITH_TEST)
    (tmp_path / "b.yml").write_text(BUILD_ONLY)
    bundle = stage(
        [
            Component(tmp_path / "a.yml", {"who": "x,y=z"}),
            Component(tmp_path / "b.yml", {"n": "7"}),
        ],
        tmp_path / "bundle",
    )
    build = bundle.phase_arguments("build")
    test = bundle.phase_arguments("test")
    assert bundle.phase_arguments("validate") is None
    assert build[1].count(",") == 1 and test[1].count(",") == 0
    keyed = json.loads((bundle.root / "parameters" / "test.json").read_text())
    assert list(keyed) == [bundle.documents[0].file]
    for phase, args, expected in (
        ("build", build, ["build x,y=z", "n=7"]),
        ("test", test, ["test x,y=z"]),
    ):
        proc = subprocess.run(
            [sys.executable, str(agent_path()), "run", *args, "--phases", phase,
             "--log-directory", str(tmp_path / "logs" / phase)],
            cwd=bundle.root, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        for text in expected:
            assert text in proc.stderr
        assert json.loads(proc.stdout)["status"] == "Success"
