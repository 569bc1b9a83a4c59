"""Running a child process with its output streamed line by line, a deadline and a kill switch."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr_tail: str
    timed_out: bool = False


def _pump(pipe, sink: Callable[[str], None], keep: Callable[[str], None]) -> None:
    for raw in iter(pipe.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        keep(line)
        sink(line)
    pipe.close()


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
    pumps = [
        threading.Thread(
            target=_pump, args=(proc.stdout, lambda s: on_line("stdout", s), out_lines.append)
        ),
        threading.Thread(
            target=_pump, args=(proc.stderr, lambda s: on_line("stderr", s), err_tail.append)
        ),
    ]
    for pump in pumps:
        pump.daemon = True
        pump.start()
    timed_out = False
    while True:
        try:
            # Short waits keep the cancel flag responsive; Popen.wait polls from 0.5 ms up.
            wait = None if deadline is None and cancel is None else 1.0
            if deadline is not None:
                wait = max(0.0, min(wait or 1.0, deadline - time.monotonic()))
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            if (deadline is not None and time.monotonic() > deadline) or (
                cancel is not None and cancel.is_set()
            ):
                timed_out = True
                _kill_group(proc)
                proc.wait()
                break
    for pump in pumps:
        pump.join(timeout=5)
    return Completed(proc.returncode, "\n".join(out_lines), "\n".join(err_tail), timed_out)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
