"""The sanitize scripts: valid bash, the groups the recipe asks for, the detached part
embedded intact and started last."""

from __future__ import annotations

import subprocess

from vmbuild.config import Sanitize
from vmbuild.stages.sanitize import GROUPS, final_script, online_script


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
    assert "--unit=vmbuild-final" in lines[start]
    assert lines[start + 1 :] == ["echo 'vmbuild-sanitize: done'"]


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


def test_detached_script_waits_for_the_session_then_runs(tmp_path) -> None:
    """detach_after_session's wait, run by a real bash: it returns once the pid it was
    given has exited, then runs the script (systemd-run itself is not run here)."""
    import threading
    import time

    from vmbuild.stages.guest import detach_after_session

    marker = tmp_path / "ran"
    text = detach_after_session(f"touch {marker}\n", "vmbuild-test")
    body = text.split("<<'VMBUILD_DETACHED'\n", 1)[1].split("VMBUILD_DETACHED\n", 1)[0]
    body = body.replace("rm -f /run/vmbuild-test.sh", "true")
    session = subprocess.Popen(["sleep", "1.5"])
    threading.Thread(target=session.wait, daemon=True).start()  # reap it: no zombie
    start = time.monotonic()
    subprocess.run(["bash", "-c", body, "detached", str(session.pid)], check=True, timeout=20)
    assert marker.exists()
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 8, f"ran {elapsed:.1f}s after start: not when the session ended"
