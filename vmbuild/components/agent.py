"""Finding (and when needed building) the guest agent zipapp, and running its validator.

The agent is the same program on the host and in the guest, so host-side checks of
component documents use exactly the rules the build will run with.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from vmbuild.errors import BuildError
from vmbuild.proc import run

SOURCE_ROOT = Path(__file__).resolve().parents[2]
AGENT_SOURCES = SOURCE_ROOT / "guest-agent"
AGENT_PYZ = SOURCE_ROOT / "dist" / "vmbuild-agent.pyz"
# Exit code of `vmbuild-agent validate` when documents are invalid (a report is still printed).
INVALID_EXIT = 2


def agent_path() -> Path:
    """`dist/vmbuild-agent.pyz`, rebuilt with `guest-agent/build.py` if missing or stale.

    `VMBUILD_AGENT` names a prebuilt zipapp instead (an installed vmbuild has no sources).
    """
    override = os.environ.get("VMBUILD_AGENT")
    if override:
        path = Path(override)
        if not path.is_file():
            raise BuildError(f"VMBUILD_AGENT={override}: no such file")
        return path
    build_script = AGENT_SOURCES / "build.py"
    package = AGENT_SOURCES / "vmbuild_agent"
    sources = [build_script, *package.rglob("*.py")] if build_script.is_file() else []
    if not sources:
        if AGENT_PYZ.is_file():
            return AGENT_PYZ
        raise BuildError(
            f"guest agent not found: no {AGENT_PYZ} and no {build_script} to build it",
            hint="run `make agent`, or set VMBUILD_AGENT to a vmbuild-agent.pyz",
        )
    AGENT_PYZ.parent.mkdir(parents=True, exist_ok=True)
    # Two builds at once (parallel tests, two vmbuild runs) must not race on the zipapp.
    with open(AGENT_PYZ.parent / ".vmbuild-agent.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        newest = max(p.stat().st_mtime for p in sources)
        if not AGENT_PYZ.is_file() or AGENT_PYZ.stat().st_mtime < newest:
            run([sys.executable, build_script, "--output", AGENT_PYZ])
    return AGENT_PYZ


def validate(document: Path, parameters: dict[str, str]) -> dict[str, Any]:
    """The agent's JSON report for one document: `{"valid", "problems": [...]}`.

    Parameters travel in a JSON file, so values may hold any character (`,` and `=` too).
    """
    with tempfile.TemporaryDirectory(prefix="vmbuild-validate-") as tmp:
        argv: list[str | Path] = [
            sys.executable, agent_path(), "validate", "--json", "--documents", document,
        ]  # fmt: skip
        if parameters:
            params_file = Path(tmp) / "parameters.json"
            params_file.write_text(json.dumps(parameters))
            argv += ["--parameters-file", params_file]
        proc = run(argv, check=False, timeout=120)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = None
    if proc.returncode not in (0, INVALID_EXIT) or not isinstance(report, dict):
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise BuildError(
            f"guest agent failed to validate {document} (exit {proc.returncode}): {tail}"
        )
    return report
