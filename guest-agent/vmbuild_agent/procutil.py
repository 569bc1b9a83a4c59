"""Running a child process with its output streamed line by line, a deadline and a kill switch."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

# How often a running child checks the cancel flag (its exit wakes us at once).
CANCEL_POLL = 0.5
# After the child exits, how long its own children may keep our pipes open.
PIPE_GRACE = 5.0


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr_tail: str
    timed_out: bool = False


def _pump(proc: subprocess.Popen, on_line: Callable[[str, str], None], out: list, err: deque):
    """Forward both pipes line by line from one thread (one selector, no polling)."""
    selector = selectors.DefaultSelector()
    buffers = {}
    for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        assert pipe is not None  # both are PIPEs
        selector.register(pipe, selectors.EVENT_READ, name)
        buffers[name] = b""
    keep = {"stdout": out.append, "stderr": err.append}

    def emit(name: str, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace")
        keep[name](line)
        on_line(name, line)

    while selector.get_map():
        for key, _ in selector.select():
            name = key.data
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                if buffers[name]:
                    emit(name, buffers[name])
                continue
            *lines, buffers[name] = (buffers[name] + chunk).split(b"\n")
            for raw in lines:
                emit(name, raw)
    selector.close()


def run_streaming(
    argv: list[str],
    on_line: Callable[[str, str], None],
    deadline: float | None = None,
    cwd: str | None = None,
    env: dict | None = None,
    cancel: threading.Event | None = None,
) -> Completed:
    """Run `argv`; every stdout/stderr line goes to on_line(stream, line) as it arrives.

    The child gets its own process group so a timeout kills everything it started.
    """
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    out_lines: list[str] = []
    err_tail: deque = deque(maxlen=20)
    pump = threading.Thread(target=_pump, args=(proc, on_line, out_lines, err_tail), daemon=True)
    pump.start()
    exited = threading.Event()

    def wait_for_exit() -> None:
        proc.wait()
        exited.set()

    waiter = threading.Thread(target=wait_for_exit, daemon=True)
    waiter.start()
    timed_out = False
    while not exited.is_set():
        wait = CANCEL_POLL if cancel is not None else None
        if deadline is not None:
            remaining = max(0.0, deadline - time.monotonic())
            wait = remaining if wait is None else min(wait, remaining)
        if exited.wait(wait):
            break
        if (deadline is not None and time.monotonic() >= deadline) or (
            cancel is not None and cancel.is_set()
        ):
            timed_out = True
            _kill_group(proc)
            exited.wait()
            break
    pump.join(PIPE_GRACE)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None and not pump.is_alive():
            pipe.close()
    return Completed(proc.returncode, "\n".join(out_lines), "\n".join(err_tail), timed_out)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
