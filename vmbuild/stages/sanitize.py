"""Sanitize the build VM before the snapshot, then power it off.

One SSH command runs a root script in two parts, because the build user cannot remove
itself while logged in:
1. in the session: remove the groups the recipe keeps enabled (and always vmbuild's own
   files), then trim the file system so the snapshot stays small; then start part 2 as
   a detached systemd unit (`detach_after_session`);
2. detached: once vmbuild's SSH session has ended, remove authorized keys and
   the build user, sync, remount every file system read-only (sysrq u), wait until the
   root file system is read-only, and power off (sysrq o); vmbuild waits for the domain
   to stop (forced after `timeouts.shutdown`).
Every command's output also goes to the serial console, so it lands in the console log.
"""

from __future__ import annotations

import shlex

from vmbuild import events
from vmbuild.build import BuildContext
from vmbuild.config import Sanitize as SanitizeConfig
from vmbuild.errors import BuildError
from vmbuild.pipeline import BaseStage
from vmbuild.stages.guest import REMOTE_ROOT, detach_after_session

GROUPS: dict[str, str] = {
    # What `cloud-init clean --logs --seed` removes, without its ~25 s Python start under TCG.
    "cloud_init": "rm -rf /var/lib/cloud/* /var/log/cloud-init.log /var/log/cloud-init-output.log",
    "ssh_host_keys": "rm -f /etc/ssh/ssh_host_*",
    "machine_id": (
        "truncate -s 0 /etc/machine-id; rm -f /var/lib/dbus/machine-id; "
        "rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret"
    ),
    "logs": (
        # journald moves to /run first, so no open journal file is deleted under it.
        "journalctl --relinquish-var >/dev/null 2>&1 || journalctl --rotate >/dev/null 2>&1; "
        "rm -rf /var/log/journal/*/*; "
        "find /var/log -type f \\( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \\) -delete; "
        "find /var/log -type f -exec truncate -s 0 {} +"
    ),
    "shell_history": (
        "rm -f /root/.bash_history /root/.zsh_history /root/.python_history /root/.lesshst "
        "/home/*/.bash_history /home/*/.zsh_history /home/*/.python_history /home/*/.lesshst"
    ),
    "tmp": "find /tmp /var/tmp -mindepth 1 -maxdepth 1 -exec rm -rf {} +",
    "dhcp_leases": (
        "rm -f /var/lib/dhcp/*.leases /var/lib/dhclient/* /var/lib/NetworkManager/*.lease "
        "/var/lib/systemd/network/* /run/systemd/netif/leases/* 2>/dev/null; true"
    ),
}


def online_script(config: SanitizeConfig, final: str) -> str:
    """The root script run over SSH: enabled groups, extra paths, vmbuild's own files;
    last, it starts `final` (the detached part) as a transient systemd unit."""
    lines = ["set -u", "exec > >(tee /dev/console) 2>&1", f"rm -rf {REMOTE_ROOT}"]
    for group, command in GROUPS.items():
        if getattr(config, group):
            lines.append(f"echo 'vmbuild-sanitize: {group}'; {{ {command}; }} || true")
    for path in config.extra_paths:
        lines.append(f"echo 'vmbuild-sanitize: {path}'; rm -rf -- {shlex.quote(path)}")
    lines += [
        "sync",
        "fstrim -av 2>/dev/null || true",
        detach_after_session(final, "vmbuild-final").rstrip("\n"),
        "echo 'vmbuild-sanitize: done'",
    ]
    return "\n".join(lines) + "\n"


def final_script(config: SanitizeConfig, user: str) -> str:
    """The detached root script: the build user's access, then power-off."""
    home = f"/home/{user}"
    # Each message carries the guest's uptime, so the console log shows where time went.
    lines = [
        "exec >/dev/console 2>&1",
        'say() { read -r up _ < /proc/uptime; echo "vmbuild-sanitize: $* (uptime ${up}s)"; }',
        "say 'SSH session ended'",
    ]
    if config.authorized_keys and not config.build_user:
        lines.append(f"rm -f {home}/.ssh/authorized_keys")
    if config.build_user:
        lines += [
            f"pkill -KILL -u {user} || true",
            f"userdel -f -r {user} || true",
            f"rm -rf {home} /etc/sudoers.d/90-cloud-init-users",
        ]
    if config.shell_history:
        lines.append("rm -f /root/.bash_history")
    # Nothing in the guest needs a service-by-service shutdown before a snapshot (its logs
    # are gone): sync, remount every file system read-only so the disk is clean, power
    # off. A full `systemctl poweroff` took ~33 s under TCG; this takes about 1.
    lines += [
        "sync",
        "say 'build user removed, synced; remounting read-only'",
        "echo 1 > /proc/sys/kernel/sysrq",
        "echo s > /proc/sysrq-trigger",
        "echo u > /proc/sysrq-trigger",
        # sysrq u only queues the remount; poll until / shows up read-only (at most 10 s).
        "for _ in $(seq 100); do grep -Eq '^[^ ]+ / [^ ]+ ro[ ,]' /proc/mounts && break; "
        "sleep 0.1; done",
        "say 'read-only; powering off'",
        "echo o > /proc/sysrq-trigger",
        "sleep 30",
        "systemctl poweroff --force",  # only if the kernel ignored the sysrq request
    ]
    return "\n".join(lines) + "\n"


class Sanitize(BaseStage):
    name = "sanitize"
    title = "Sanitizing the build VM and shutting it down"

    def run(self, ctx: BuildContext) -> None:
        vm = ctx.machine
        session = vm.session
        config = ctx.recipe.sanitize
        final = final_script(config, vm.machine.spec.user)
        result = session.run(
            "sudo -n bash -s",
            input=online_script(config, final),
            stream=lambda line, _n: events.output(line, source="sanitize"),
            timeout=600,
        )
        if result.exit_code != 0:
            raise BuildError(f"sanitize failed (exit {result.exit_code}): {result.stderr[-1500:]}")
        vm.close_session()
        self._wait_poweroff(ctx)

    def _wait_poweroff(self, ctx: BuildContext) -> None:
        machine = ctx.machine.machine
        limit = ctx.timeouts()["shutdown"]
        if machine.wait_stopped(limit):
            events.info("build VM powered off cleanly")
            ctx.facts["clean_shutdown"] = True
            return
        events.warn(f"the build VM did not power off within {limit:.0f}s; forcing it")
        ctx.facts["clean_shutdown"] = machine.shutdown(30)
