"""Stopping the test servers the fixtures start (SeaweedFS, sshd, moto, docker-registry)."""

from __future__ import annotations

import subprocess
from typing import IO, Any


def stop_process(proc: subprocess.Popen[Any], log: IO[Any] | None = None) -> None:
    """SIGTERM, up to 10 s to exit, then SIGKILL; close its log file."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if log is not None:
        log.close()
