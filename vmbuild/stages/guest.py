"""Working with a running build or test VM: launching it for a build, pushing the agent
and components, running a phase with reboot-and-resume, and fetching the agent's logs.

The guest layout: `/var/tmp/vmbuild/` holds the agent, the staged documents, the
agent's state (it survives reboots, which resume needs) and its logs. Sanitize removes
it before the snapshot.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from vmbuild import events
from vmbuild.build import BuildContext
from vmbuild.errors import BuildError
from vmbuild.ssh import Session, tree_files
from vmbuild.vm.machine import BootStalled, Machine, ReadyTimeouts, VMSpec, launch

REMOTE_ROOT = "/var/tmp/vmbuild"
REBOOT_EXIT = 194
GATE_OPEN = b"go\n"  # what opens the agent's `--gate stdin`; EOF or anything else closes it
MAX_REBOOTS = 10


def vm_spec(ctx: BuildContext, role: str, disk: Path) -> VMSpec:
    """The VM for one role ("build", "test") of this build."""
    vm = ctx.recipe.vm
    network = {"mode": vm.network.mode.value}
    if vm.network.name:
        network["name"] = vm.network.name
    return VMSpec(
        build_id=ctx.build_id,
        role=role,
        disk=disk,
        workdir=ctx.tmp / "vm",
        console_log=ctx.logs / f"console-{role}.log",
        uri=vm.uri,
        accelerator=ctx.accel,
        memory_mib=vm.memory,
        vcpus=vm.cpus,
        network=network,
        uefi=vm.firmware.value == "uefi",
        build_key=ctx.build_key,
        extra_user_data=ctx.recipe.user_data or None,
        keep_on_error=ctx.keep_on_error,
        machine=vm.machine.value,
    )


def ready_timeouts(ctx: BuildContext) -> ReadyTimeouts:
    """Readiness limits: the recipe's values as given, defaults scaled for TCG.

    The VM multiplies ReadyTimeouts by the accelerator's factor, so they are divided by
    it here: a timeout the user wrote stays exactly what they wrote.
    """
    t = ctx.timeouts()
    factor = ctx.accel.scale(1.0)
    return ReadyTimeouts(
        banner=(t["boot"] + t["ssh"]) / factor,
        login=60.0,
        cloud_init=t["cloud_init"] / factor,
        silence=t["boot"] / factor,
    )


# Bash: SESSION_SSHD becomes the pid of the sshd process serving this SSH session (0 if
# none), found by walking up the parents of this shell.
FIND_SESSION_SSHD = """\
pid=$$; SESSION_SSHD=0
while [ "$pid" -gt 1 ]; do
    read -r comm < /proc/$pid/comm
    if [ "$comm" = sshd ]; then SESSION_SSHD=$pid; break; fi
    read -r _ _ _ pid _ < /proc/$pid/stat
done
"""


def detach_after_session(script: str, unit: str) -> str:
    """Bash for a root shell in an SSH session: start `script` (bash) as the transient
    systemd unit `unit`, which first waits for this SSH session to end (at most 10 s).

    For what must not run under the session: removing the user it is logged in as,
    powering off, or saving the VM with no session process left behind in its memory.
    """
    path = f"/run/{unit}.sh"
    return (
        FIND_SESSION_SSHD
        + f"cat > {path} <<'VMBUILD_DETACHED'\n"
        + "SESSION_SSHD=$1\n"
        + 'while [ "$SESSION_SSHD" -gt 0 ] && kill -0 "$SESSION_SSHD" 2>/dev/null '
        + '&& [ "$SECONDS" -lt 10 ]; do sleep 0.1; done\n'
        + f"rm -f {path}\n"
        + script
        + ("" if script.endswith("\n") else "\n")
        + "VMBUILD_DETACHED\n"
        + f'systemd-run --quiet --no-block --unit={unit} bash {path} "$SESSION_SSHD"\n'
    )


class RunningVM:
    """A running VM and its SSH session; `stack` holds what removes the VM."""

    def __init__(
        self, ctx: BuildContext, role: str, machine: Machine, stack: contextlib.ExitStack
    ) -> None:
        self.ctx = ctx
        self.role = role
        self.machine = machine
        self.stack = stack
        self.session: Session | None = None
        # Set while something every step relies on may still be under way: cloud-init's
        # last stage on a cold boot, the clock and key on a restored VM (warm.py).
        self.settling: Future[None] | None = None

    @classmethod
    def boot(cls, ctx: BuildContext, role: str, disk: Path) -> RunningVM:
        """Boot a VM cold from `disk` (an overlay the VM may write)."""
        stack = contextlib.ExitStack()
        machine = stack.enter_context(launch(vm_spec(ctx, role, disk)))
        return cls(ctx, role, machine, stack)

    @classmethod
    def boot_ready(cls, ctx: BuildContext, role: str, make_disk: Callable[[], Path]) -> RunningVM:
        """Boot a VM cold on a fresh disk from `make_disk()` and log in (`wait_ready`).

        A boot that stalls (console silent for `timeouts.boot`; TCG guests do at times,
        early in the kernel) is destroyed and tried once more on a fresh disk.
        """
        for attempt in (1, 2):
            vm = cls.boot(ctx, role, make_disk())
            try:
                vm.wait_ready()
                return vm
            except BootStalled as exc:
                vm.close(exc if attempt == 2 else None)
                if attempt == 2:
                    raise
                console = vm.machine.console_log
                kept = console.with_name(f"{console.stem}-stalled{console.suffix}")
                with contextlib.suppress(OSError):
                    shutil.copyfile(console, kept)
                events.warn(f"{exc.message.splitlines()[0]}; booting it again on a fresh disk "
                            f"(that boot's console: {kept})")  # fmt: skip
            except BaseException as exc:
                vm.close(exc)
                raise
        raise AssertionError("unreachable")

    def wait_ready(self) -> Session:
        """Log in; cloud-init's end is awaited in the background (`self.settling`),
        and the first agent run waits for it at its gate (`run_phase`)."""
        timeouts = ready_timeouts(self.ctx)
        session = self.machine.wait_ready(timeouts, cloud_init=False)
        self.session = session
        self.stack.callback(self.close_session)
        self.settling = self.machine.watch_cloud_init(session, timeouts)
        self.ctx.facts.setdefault("boot_seconds", {})[self.role] = round(
            self.machine.ssh_seconds or 0.0, 1
        )
        return session

    def wait_settled(self) -> None:
        """Block until `settling` is done (raises its failure); then there is no gate."""
        if self.settling is not None:
            self.settling.result()
            self.settling = None

    def close_session(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def close(self, error: BaseException | None) -> None:
        """Destroy the VM (kept running on error when the user asked)."""
        if error is None:
            self.stack.close()
        else:
            self.stack.__exit__(type(error), error, error.__traceback__)


def push_payload(ctx: BuildContext, session: Session) -> None:
    """Replace the guest's REMOTE_ROOT with the agent and the staged component documents
    (one tar stream, one command)."""
    assert ctx.agent is not None
    files = {"vmbuild-agent.pyz": ctx.agent, **tree_files(ctx.bundle.root, "bundle/")}
    session.put_files(files, REMOTE_ROOT, clean=True)
    events.info(f"pushed the agent and {len(files) - 1} component file(s) to {REMOTE_ROOT}")


def _failures(summary: dict[str, Any]) -> list[str]:
    """Readable failed steps from the agent's JSON summary."""
    found = []
    for doc in summary.get("documents") or []:
        for phase in doc.get("phases") or []:
            for step in phase.get("steps") or []:
                if step.get("status") == "Failed":
                    found.append(
                        f"{doc.get('name')}/{phase.get('name')}/{step.get('name')}: "
                        f"{step.get('failureMessage') or 'failed'}"
                    )
    return found


def _parse_summary(stdout: str) -> dict[str, Any]:
    text = stdout.strip()
    if not text:
        return {}
    with contextlib.suppress(json.JSONDecodeError):
        return json.loads(text)
    with contextlib.suppress(json.JSONDecodeError, IndexError):  # last JSON line
        return json.loads(text.splitlines()[-1])
    return {}


def run_phase(ctx: BuildContext, vm: RunningVM, phase: str, *, deadline: float) -> dict[str, Any]:
    """Run `phase` of every component that has it, in recipe order, in one agent run;
    reboot and resume when the agent asks. Returns the agent's summary ({} if no
    component has the phase); raises BuildError naming the failed steps.

    While the VM is still settling (cloud-init's last stage on a cold boot, the clock
    and key on a restored VM), the agent starts at once but waits at its gate (`--gate
    stdin`) until that has finished cleanly: the agent's start-up overlaps it, and no
    step runs before it.
    """
    assert vm.session is not None
    args = ctx.bundle.phase_arguments(phase)
    if args is None:
        vm.wait_settled()
        events.info(f"no component has a {phase} phase")
        return {}
    argv = [
        "sudo", "-n", "python3", f"{REMOTE_ROOT}/vmbuild-agent.pyz", "run", *args,
        "--phases", phase, "--log-directory", f"{REMOTE_ROOT}/logs",
        "--state-directory", f"{REMOTE_ROOT}/state/{phase}", "--execution-id", phase,
    ]  # fmt: skip

    def open_gate() -> bytes:
        vm.wait_settled()
        return GATE_OPEN

    for reboot in range(MAX_REBOOTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BuildError(f"{phase} phase: timed out (timeouts.build / test.timeout)")
        gate = ["--gate", "stdin"] if vm.settling is not None else []
        result = vm.session.run(
            f"cd {REMOTE_ROOT}/bundle && {shlex.join(argv + gate)}",
            stream=lambda line, _name: events.output(line), timeout=remaining,
            input=open_gate if gate else None,
        )  # fmt: skip
        if result.exit_code != REBOOT_EXIT:
            break
        if reboot == MAX_REBOOTS:
            raise BuildError(f"{phase} phase: more than {MAX_REBOOTS} reboots")
        events.info(f"{phase} phase: reboot requested; rebooting and resuming")
        vm.session = vm.machine.reboot(vm.session)
    summary = _parse_summary(result.stdout)
    if result.exit_code != 0:
        failed = _failures(summary) or [result.stderr.strip()[-2000:] or "no output"]
        sources = ", ".join(str(d.source) for d in ctx.bundle.documents
                            if any(f.startswith(f"{d.name}/") for f in failed))  # fmt: skip
        raise BuildError(
            f"{phase} phase failed (agent exit {result.exit_code})"
            + (f" in {sources}" if sources else "")
            + ":\n  "
            + "\n  ".join(failed)
        )
    return summary


def fetch_logs(vm: RunningVM, local: Path, *, timeout: float = 120) -> int:
    """Copy the agent's log folder out of the guest, if it can still be reached; returns
    the number of files. Never raises: the logs help explain a build, never fail it."""
    session = vm.session
    if session is None or not session.is_active():
        return 0
    try:
        return session.get_tree(f"{REMOTE_ROOT}/logs", local, timeout=timeout)
    except Exception as exc:
        events.warn(f"could not copy the agent's logs to {local}: {exc}")
        return 0
