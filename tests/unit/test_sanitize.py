"""The sanitize scripts: valid bash, the groups the recipe asks for, the detached part
embedded intact and started last."""

from __future__ import annotations

import subprocess

from vmbuild.config import Sanitize
from vmbuild.stages.sanitize import FINAL_SCRIPT, GROUPS, final_script, online_script


def _bash_syntax_ok(script: str) -> None:
    result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_scripts_are_valid_bash() -> None:
    config = Sanitize()
    final = final_script(config, "build")
    _bash_syntax_ok(final)
    _bash_syntax_ok(online_script(config, final))


def test_online_script_embeds_the_final_script_and_starts_it_last() -> None:
    config = Sanitize()
    final = final_script(config, "build")
    online = online_script(config, final)
    assert final in online
    lines = online.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("systemd-run"))
    assert FINAL_SCRIPT in lines[start]
    assert all("vmbuild-sanitize: " not in line or "done" in line for line in lines[start:])


def test_disabled_groups_are_left_out() -> None:
    config = Sanitize(logs=False, tmp=False)
    online = online_script(config, final_script(config, "build"))
    assert GROUPS["logs"] not in online and GROUPS["tmp"] not in online
    assert GROUPS["ssh_host_keys"] in online


def test_final_script_removes_the_build_user_only_when_asked() -> None:
    assert "userdel -f -r build" in final_script(Sanitize(), "build")
    kept = final_script(Sanitize(build_user=False), "build")
    assert "userdel" not in kept and "rm -f /home/build/.ssh/authorized_keys" in kept


def test_the_read_only_wait_matches_proc_mounts_lines() -> None:
    """The poll's regular expression against real /proc/mounts lines."""
    pattern = r"^[^ ]+ / [^ ]+ ro[ ,]"
    ro = "/dev/vda1 / ext4 ro,relatime 0 0\n"
    rw = "/dev/vda1 / ext4 rw,relatime,discard 0 0\nproc /proc proc ro,nosuid 0 0\n"
    assert pattern in final_script(Sanitize(), "build")
    grep = ["grep", "-Eq", pattern]
    assert subprocess.run(grep, input=ro, text=True).returncode == 0
    assert subprocess.run(grep, input=rw, text=True).returncode == 1
