"""UpdateOS command lines for every package manager, and one run through the agent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vmbuild_agent.actions.system import update_commands
from vmbuild_agent.cli import parse_parameters
from vmbuild_agent.errors import InvalidInput

from tests.unit.agent.helpers import Agent, simple


def test_update_commands_per_manager():
    apt = update_commands("apt-get", [], ["linux-image-amd64"])
    assert apt[0] == ["apt-get", "update"]
    assert apt[1] == ["apt-mark", "hold", "linux-image-amd64"]
    assert apt[2][:2] == ["apt-get", "dist-upgrade"] and "-y" in apt[2]
    assert apt[3] == ["apt-mark", "unhold", "linux-image-amd64"]
    only = update_commands("apt-get", ["openssl"], [])
    assert only[-1][-2:] == ["--only-upgrade", "openssl"]
    assert update_commands("dnf", ["kernel"], ["x"]) == [
        ["dnf", "-y", "upgrade", "kernel", "--exclude=x"]
    ]
    assert update_commands("yum", [], []) == [["yum", "-y", "update"]]
    zypper = update_commands("zypper", [], ["k"])
    assert [c[2] for c in zypper] == ["addlock", "update", "removelock"]


def test_update_os_runs_the_package_manager(agent: Agent, tmp_path: Path):
    """Stub package manager: a real `apt-get dist-upgrade` would change this host's packages,
    so a logging `apt-get`/`apt-mark` pair earlier on PATH stands in for them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool in ("apt-get", "apt-mark"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\necho "{tool} ran"\n')
        script.chmod(0o755)
    doc = simple({"name": "Update", "action": "UpdateOS", "inputs": {"exclude": ["kernel"]}})
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = agent.run(doc, env=env)
    if Path("/var/run/reboot-required").exists():
        pytest.skip("this host already asks for a reboot")
    assert result.code == 0, result.stdout
    lines = calls.read_text().splitlines()
    assert lines[0] == "apt-get update"
    assert lines[1] == "apt-mark hold kernel"
    assert lines[2].startswith("apt-get dist-upgrade -y")
    assert lines[3] == "apt-mark unhold kernel"
    assert "apt-get ran" in result.stderr


def test_parameters_flag_parsing():
    assert parse_parameters("a=1,b=x,y,c=") == {"a": "1", "b": "x,y", "c": ""}
    assert parse_parameters("url=http://127.0.0.1/?q=1") == {"url": "http://127.0.0.1/?q=1"}
    with pytest.raises(InvalidInput):
        parse_parameters("novalue")
