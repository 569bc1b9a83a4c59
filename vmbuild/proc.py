"""The one subprocess wrapper: logs the (optionally redacted) command, raises CommandError."""

from __future__ import annotations

import logging
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from vmbuild.errors import CommandError

log = logging.getLogger(__name__)


def _redacted(argv: Sequence[str], secrets: Iterable[str]) -> str:
    line = shlex.join(argv)
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return line


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    capture: bool = True,
    input: str | bytes | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    secrets: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise CommandError with exit code and stderr tail.

    `secrets` are replaced by *** in the logged command line.
    """
    args = [str(a) for a in argv]
    log.debug("$ %s", _redacted(args, secrets))
    text_input = input.decode() if isinstance(input, bytes) else input
    try:
        proc = subprocess.run(
            args,
            check=False,
            capture_output=capture,
            text=True,
            input=text_input,
            timeout=timeout,
            env=env,
            cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise CommandError(args, 127, f"{args[0]}: not found ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(args, -1, f"timed out after {timeout}s") from exc
    if check and proc.returncode != 0:
        raise CommandError(
            [_redacted(args, secrets)], proc.returncode, proc.stderr or "", proc.stdout or ""
        )
    return proc


class Background:
    """A command that runs while the build goes on (for example, compressing the image
    during the test VM's boot). `wait()` raises CommandError like `run`; `stop()` kills it.
    `nice` lowers its CPU priority so it takes what the foreground leaves idle.
    """

    def __init__(self, argv: Sequence[str | Path], *, nice: int = 0) -> None:
        self.argv = [str(a) for a in argv]
        if nice:
            self.argv = ["nice", "-n", str(nice), *self.argv]
        log.debug("$ %s &", shlex.join(self.argv))
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in wait/stop
        self._lock = threading.Lock()
        try:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                         stderr=self._stderr, text=True)  # fmt: skip
        except FileNotFoundError as exc:
            self._stderr.close()
            raise CommandError(self.argv, 127, f"{self.argv[0]}: not found ({exc})") from exc

    def wait(self, timeout: float | None = None) -> None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise CommandError(self.argv, -1, f"timed out after {timeout}s") from exc
        if code != 0:
            raise CommandError(self.argv, code, self._take_stderr())
        self._take_stderr()

    def stop(self) -> None:
        """Kill it if it still runs, and reap it (safe while another thread waits)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._take_stderr()

    def _take_stderr(self) -> str:
        """Its standard error, once; the file is closed after."""
        with self._lock:
            if self._stderr.closed:
                return ""
            self._stderr.seek(0)
            text = self._stderr.read()
            self._stderr.close()
            return text
