"""One real VM (libvirt + QEMU under TCG) through its whole life, booted once for the module.

Boot the base image with a seed, log in with the pinned host key, run commands with
streamed output, push files, reboot and reconnect, shut down cleanly, and check that
no domain is left behind. The tests run in file order and share the VM.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmbuild import disk
from vmbuild.keys import fingerprint, generate_host_keys, write_known_hosts
from vmbuild.ssh import HostKeyMismatch, Session, Target, tree_files
from vmbuild.vm import Machine, VMSpec, launch, leftover_domains

pytestmark = pytest.mark.integration


@dataclass
class Booted:
    vm: Machine
    ssh: Session
    name: str
    console_log: Path


@pytest.fixture(scope="module")
def booted(base_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    work = tmp_path_factory.mktemp("vm-lifecycle")
    overlay = disk.overlay(base_image, work / "overlay.qcow2")
    spec = VMSpec(
        build_id=f"it-{uuid.uuid4().hex[:8]}",
        role="lifecycle",
        disk=overlay,
        workdir=work,
        console_log=work / "console.log",
        memory_mib=1024,
        extra_user_data={"write_files": [{"path": "/etc/vmbuild-test", "content": "seeded\n"}]},
    )
    with launch(spec) as vm, vm.wait_ready() as ssh:
        yield Booted(vm, ssh, vm.name, spec.console_log)


def test_login_uses_the_injected_host_key(booted: Booted) -> None:
    out = booted.ssh.run(
        "sudo -n ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub", check=True
    ).stdout
    (pinned,) = booted.vm.host_keys
    assert out.split()[1] == fingerprint(pinned)


def test_a_different_host_key_is_refused(booted: Booted, tmp_path: Path) -> None:
    target = booted.vm.target()
    wrong = write_known_hosts(tmp_path / "kh", target.host, target.port, generate_host_keys())
    with pytest.raises(HostKeyMismatch):
        Session.connect(Target(target.host, target.port, target.user, target.key, wrong))


def test_seed_user_and_recipe_user_data(booted: Booted) -> None:
    ssh = booted.ssh
    assert ssh.run("id -un", check=True).stdout.strip() == "build"
    assert ssh.run("sudo -n true").exit_code == 0, "passwordless sudo"
    assert ssh.run("cat /etc/vmbuild-test", check=True).stdout == "seeded\n"
    sshd = ssh.run("sudo -n sshd -T", check=True).stdout
    assert "passwordauthentication no" in sshd


def test_run_streams_lines_and_exit_code(booted: Booted) -> None:
    seen: list[tuple[str, str]] = []
    code, out, err = booted.ssh.run(
        "for i in 1 2 3; do echo line$i; done; echo oops >&2; exit 7",
        stream=lambda line, source: seen.append((source, line)),
        timeout=120,
    )
    assert code == 7
    assert out.splitlines() == ["line1", "line2", "line3"] and err == "oops\n"
    assert [s for s in seen if s[0] == "stdout"] == [("stdout", f"line{i}") for i in (1, 2, 3)]


def test_push_files(booted: Booted, tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from $(hostname)\n")
    script.chmod(0o755)
    booted.ssh.put_files({"hello.sh": script}, "/tmp")
    assert booted.ssh.run("/tmp/hello.sh", check=True).stdout.startswith("hello from ")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f.txt").write_text("deep")
    booted.ssh.put_files(tree_files(tree), "/tmp/pushed/tree", clean=True)
    assert booted.ssh.run("cat /tmp/pushed/tree/sub/f.txt", check=True).stdout == "deep"
    assert booted.ssh.get_tree("/tmp/pushed/tree/sub", tmp_path / "back") == 1
    back = tmp_path / "back" / "f.txt"
    assert back.read_text() == "deep"


def test_reboot_and_reconnect(booted: Booted) -> None:
    before = booted.ssh.boot_id()
    booted.ssh.run("echo survives > /var/tmp/marker", check=True)
    booted.vm.reboot(booted.ssh)
    assert booted.ssh.boot_id() != before
    assert booted.ssh.run("cat /var/tmp/marker", check=True).stdout == "survives\n"


def test_shutdown_leaves_no_domain(booted: Booted) -> None:
    booted.ssh.run("sync", check=True)
    assert booted.vm.shutdown() is True, "clean ACPI power-off"
    assert not booted.vm.is_running()
    assert leftover_domains(prefix=booted.name) == []
    assert "reboot: Power down" in booted.console_log.read_text(errors="replace")
