"""Reading cloud-init's result file, and the wait script itself run by a real shell."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from vmbuild.vm import cloudinit


def test_clean_result_is_done() -> None:
    text = json.dumps({"v1": {"datasource": "DataSourceNoCloud", "errors": []}})
    assert cloudinit.parse_result(text) == cloudinit.Outcome(state="done")


def test_errors_and_recoverable_errors_are_kept_apart() -> None:
    text = json.dumps(
        {
            "v1": {
                "errors": ["('ssh', KeyError('x'))"],
                "recoverable_errors": {"WARNING": ["deprecated key"]},
            }
        }
    )
    outcome = cloudinit.parse_result(text)
    assert outcome.errors == ("('ssh', KeyError('x'))",)
    assert outcome.warnings == ("WARNING: deprecated key",)


def test_vmbuild_markers() -> None:
    assert cloudinit.parse_result('{"vmbuild": "disabled"}').state == "disabled"


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]"])
def test_unreadable_result_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="result.json"):
        cloudinit.parse_result(text)


def test_wait_script_waits_for_the_result_file(tmp_path) -> None:
    """The real script in /bin/sh, pointed at a folder standing in for /run/cloud-init."""
    run_dir = tmp_path / "run-cloud-init"
    run_dir.mkdir()
    script = cloudinit.WAIT_SCRIPT.replace("/run/cloud-init", str(run_dir))
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert proc.poll() is None, "finished before cloud-init did"
        (run_dir / "result.json").write_text('{"v1": {"errors": ["boom"]}}')
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert cloudinit.parse_result(out).errors == ("boom",)


def test_wait_script_stops_when_cloud_init_is_disabled(tmp_path) -> None:
    run_dir = tmp_path / "run-cloud-init"
    run_dir.mkdir()
    (run_dir / "disabled").touch()
    script = cloudinit.WAIT_SCRIPT.replace("/run/cloud-init", str(run_dir))
    out = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    assert cloudinit.parse_result(out).state == "disabled"
