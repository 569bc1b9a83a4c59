"""UpdateOS (apt, dnf, yum, zypper) and Reboot."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from vmbuild_agent.actions import Action, Field, register
from vmbuild_agent.errors import RebootRequested, StepFailed

MANAGERS = ("apt-get", "dnf", "yum", "zypper")
_APT_OPTS = ["-y", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]


def find_manager() -> str | None:
    for name in MANAGERS:
        if shutil.which(name):
            return name
    return None


def update_commands(manager: str, include: list[str], exclude: list[str]) -> list[list[str]]:
    """The command lines that update the OS (only `include` when given, never `exclude`)."""
    if manager == "apt-get":
        commands = [["apt-get", "update"]]
        if exclude:
            commands.append(["apt-mark", "hold", *exclude])
        if include:
            commands.append(["apt-get", "install", *_APT_OPTS, "--only-upgrade", *include])
        else:
            commands.append(["apt-get", "dist-upgrade", *_APT_OPTS])
        if exclude:
            commands.append(["apt-mark", "unhold", *exclude])
        return commands
    if manager in ("dnf", "yum"):
        verb = "upgrade" if manager == "dnf" else "update"
        return [[manager, "-y", verb, *include, *[f"--exclude={e}" for e in exclude]]]
    if manager == "zypper":
        commands = []
        if exclude:
            commands.append(["zypper", "--non-interactive", "addlock", *exclude])
        commands.append(["zypper", "--non-interactive", "update", *include])
        if exclude:
            commands.append(["zypper", "--non-interactive", "removelock", *exclude])
        return commands
    raise StepFailed(f"UpdateOS: unsupported package manager {manager}")


def _names(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    return [str(v) for v in value]


@register
class UpdateOS(Action):
    """Installs available updates; asks for a reboot when the OS says one is needed."""

    name = "UpdateOS"
    shape = "mapping"
    # A list, or one comma/space-separated string (handy with a parameter).
    fields = {"include": Field("any", default=[]), "exclude": Field("any", default=[])}

    def run(self, inputs: Any, ctx: Any) -> dict:
        item = self.with_defaults(self.items(inputs)[0])  # type: ignore[index]
        manager = find_manager()
        if manager is None:
            raise StepFailed(f"UpdateOS: no supported package manager ({', '.join(MANAGERS)})")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in update_commands(manager, _names(item["include"]), _names(item["exclude"])):
            ctx.output("+ " + " ".join(argv))
            done = ctx.run(argv, env=env)
            if done.returncode != 0:
                tail = done.stderr_tail.strip()
                raise StepFailed(
                    f"UpdateOS: {' '.join(argv)} failed with exit code {done.returncode}"
                    + (f"; stderr: {tail}" if tail else "")
                )
        if os.path.exists("/var/run/reboot-required"):
            raise RebootRequested("UpdateOS: the update needs a reboot", rerun=False)
        return {}


@register
class Reboot(Action):
    """Saves the execution state and asks the host to reboot the machine."""

    name = "Reboot"
    shape = "mapping"
    fields = {"delaySeconds": Field("int", default=0)}

    def run(self, inputs: Any, ctx: Any) -> dict:
        item = self.with_defaults(self.items(inputs)[0])  # type: ignore[index]
        delay = int(item["delaySeconds"] or 0)
        if delay > 0:
            end = time.monotonic() + delay
            while time.monotonic() < end:
                ctx.check_deadline()
                time.sleep(min(0.2, max(0.0, end - time.monotonic())))
        raise RebootRequested("Reboot step", rerun=False)
