"""Warm build VMs under TCG: a warm build against a cold one, two builds restoring one
state at once, and the fallback when a state file is corrupt.

Each test module run uses a private cache (VMBUILD_CACHE), so the states here are made
by these tests and the user's cache is left alone.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.imagefs import ImageFS
from tests.integration.buildkit import (
    DATA,
    agent_steps,
    assert_nothing_left,
    domains_of,
    manifest,
    write_recipe,
)
from vmbuild import events, warm
from vmbuild.build import BuildOptions, OnError, run_build
from vmbuild.config import load_recipe
from vmbuild.vm import savefile
from vmbuild.vm.machine import leftover_domains, remove_leftovers

pytestmark = pytest.mark.integration
GREETING = "warm greetings"
# Paths whose content legitimately differs between any two boots or builds.
VOLATILE = ("/var/lib/systemd/", "/var/cache/", "/var/log/", "/var/lib/apt/", "/var/lib/dpkg/")


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm-cache")
    saved = os.environ.get("VMBUILD_CACHE")
    # Keep the bootstrap cache where it is: parents here are paths, not definitions.
    os.environ["VMBUILD_CACHE"] = str(root)
    yield root
    if saved is None:
        os.environ.pop("VMBUILD_CACHE", None)
    else:
        os.environ["VMBUILD_CACHE"] = saved


@pytest.fixture(scope="module")
def recipe(base_image, tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm-recipe")
    marker = {"path": str(DATA / "marker.yml"), "parameters": {"greeting": GREETING}}
    # Rebooting twice (exit 194, Reboot step) also covers a restored VM's reboot.
    return write_recipe(folder, "warm", base_image, [marker, {"path": str(DATA / "reboots.yml")}])


@pytest.fixture(scope="module")
def quick_recipe(base_image, tmp_path_factory):
    """Same VM shape (so the same warm state), without the reboots: for the tests that
    only need builds to restore, not to reboot."""
    folder = tmp_path_factory.mktemp("warm-quick")
    marker = {"path": str(DATA / "marker.yml"), "parameters": {"greeting": GREETING}}
    return write_recipe(folder, "warm", base_image, [marker])


@pytest.fixture(scope="module")
def warm_and_cold(recipe, warm_cache):
    """The same recipe built cold (no test phase) and warm (test phase on: it boots cold)."""
    cold = run_build(load_recipe(recipe), BuildOptions(warm=False, test=False))
    hot = run_build(load_recipe(recipe), BuildOptions(warm=True))
    return cold, hot


def files_of(image: Path) -> dict[str, str]:
    with ImageFS(image) as fs:
        return fs.tree()


def test_build_phase_reboots_and_resumes(warm_and_cold):
    for ctx in warm_and_cold:
        steps = agent_steps(ctx.build_dir / "logs" / "agent-build")
        for name in ("RebootByExitCode", "RecordBoot", "RebootStep", "AfterReboot"):
            assert steps[name]["status"] == "Success", (ctx.build_dir, name, steps[name])
        with ImageFS(ctx.build_dir / "image.qcow2") as fs:
            assert fs.read("/etc/vmbuild-rebooted") == "resumed\n"


def test_warm_build_restored_and_tested_cold(warm_and_cold):
    _, hot = warm_and_cold
    facts = manifest(hot.build_dir)["warm"]
    assert facts["created"] is True and facts["fallback"] is False
    assert facts["restore_seconds"] > 0
    assert len(warm.entries()) == 1
    held = {p.name for p in warm.entries()[0].path.iterdir()}
    assert held == {"disk.qcow2", "state.sav", "seed.iso", "meta.json", "id_ed25519",
                    "id_ed25519.pub"}, "a warm entry holds the state and nothing else"  # fmt: skip
    logs = hot.build_dir / "logs"
    assert (logs / "console-warm.log").stat().st_size > 0
    steps = agent_steps(logs / "agent-test")
    assert steps["MarkerInNewImage"]["status"] == "Success"
    assert "Linux version" in (logs / "console-test.log").read_text(errors="replace")


def test_warm_image_holds_nothing_a_cold_build_would_not(warm_and_cold):
    cold, hot = warm_and_cold
    cold_files = files_of(cold.build_dir / "image.qcow2")
    hot_files = files_of(hot.build_dir / "image.qcow2")
    only_warm = sorted(p for p in set(hot_files) - set(cold_files) if not p.startswith(VOLATILE))
    only_cold = sorted(p for p in set(cold_files) - set(hot_files) if not p.startswith(VOLATILE))
    assert only_warm == [] and only_cold == []
    warm_pub = (warm.entries()[0].path / "id_ed25519.pub").read_text().split()[1]
    with ImageFS(hot.build_dir / "image.qcow2") as fs:
        assert fs.read("/etc/vmbuild-marker") == GREETING + "\n"
        assert fs.read("/etc/vmbuild-rebooted") == "resumed\n"
        assert [n for n in fs.names("/etc/ssh") if n.startswith("ssh_host_")] == []
        assert fs.read("/etc/machine-id") == ""
        assert fs.names("/var/lib/cloud") == []
        assert "build" not in fs.names("/home")
        for path in hot_files:
            if path.endswith("authorized_keys"):
                assert warm_pub not in fs.read(path)


def test_two_builds_restore_one_state_at_once(quick_recipe, warm_and_cold, warm_cache):
    env = {**os.environ, "VMBUILD_CACHE": str(warm_cache)}
    command = [sys.executable, "-m", "vmbuild.cli", "--json", "run", "--no-test", str(quick_recipe)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]  # fmt: skip
    results = [p.communicate(timeout=1800) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
    build_dirs = []
    for out, _ in results:
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        build_dirs.append(Path(next(e["data"]["build_dir"] for e in events
                                    if e["kind"] == "result")))  # fmt: skip
    facts = [manifest(d)["warm"] for d in build_dirs]
    assert [f["created"] for f in facts] == [False, False]
    assert facts[0]["key"] == facts[1]["key"]
    for build_dir in build_dirs:
        with ImageFS(build_dir / "image.qcow2") as fs:
            assert fs.read("/etc/vmbuild-marker") == GREETING + "\n"
        assert domains_of(build_dir) == []


def test_corrupt_state_falls_back_and_is_made_again(quick_recipe, warm_and_cold):
    entry = warm.entries()[0]
    state = entry.path / "state.sav"
    offset = savefile.read(state).stream_offset
    with open(state, "r+b") as fh:  # clobber the start of QEMU's migration stream
        fh.seek(offset)
        fh.write(os.urandom(4096))
    created_before = entry.meta()["created"]
    ctx = run_build(load_recipe(quick_recipe), BuildOptions(warm=True, test=False))
    facts = manifest(ctx.build_dir)["warm"]
    assert facts["fallback"] is True and facts["created"] is True
    assert entry.meta()["created"] > created_before
    assert savefile.read(state).stream_offset > 0
    with ImageFS(ctx.build_dir / "image.qcow2") as fs:
        assert fs.read("/etc/vmbuild-marker") == GREETING + "\n"
    assert not (ctx.build_dir / ".tmp").exists()


def test_failed_warm_build_leaves_nothing(base_image, warm_and_cold, tmp_path):
    failing = write_recipe(tmp_path, "warm", base_image, [{"path": str(DATA / "fails-build.yml")}])
    with pytest.raises(Exception, match="BreaksOnPurpose"):
        run_build(load_recipe(failing), BuildOptions(warm=True, test=False))
    build_dir = next((tmp_path / "work").iterdir())
    assert manifest(build_dir)["warm"]["created"] is False  # it reused the module's state
    assert_nothing_left(build_dir)


def test_on_error_keep_leaves_a_reachable_vm(base_image, warm_and_cold, tmp_path):
    """`--on-error keep`: the failed build VM keeps running and the printed ssh works."""
    failing = write_recipe(tmp_path, "warm", base_image, [{"path": str(DATA / "fails-build.yml")}])
    warnings: list[str] = []
    unsubscribe = events.subscribe(
        lambda e: warnings.append(e.message) if e.kind == "warning" else None
    )
    try:
        with pytest.raises(Exception, match="BreaksOnPurpose"):
            run_build(load_recipe(failing),
                      BuildOptions(warm=True, test=False, on_error=OnError.KEEP))  # fmt: skip
    finally:
        unsubscribe()
    build_dir = next((tmp_path / "work").iterdir())
    kept = manifest(build_dir)["kept_vms"]
    try:
        assert len(kept) == 1 and kept[0] in leftover_domains()
        command = next(w.split("get in with: ", 1)[1] for w in warnings if "get in with" in w)
        *options, destination = shlex.split(command)
        probe = subprocess.run(
            [*options, "-o", "BatchMode=yes", destination, "cat /etc/hostname"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        assert (build_dir / ".tmp").is_dir()
    finally:
        remove_leftovers(prefix=kept[0])
        shutil.rmtree(build_dir / ".tmp", ignore_errors=True)
    assert kept[0] not in leftover_domains()
