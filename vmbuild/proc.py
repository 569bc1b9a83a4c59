"""The one subprocess wrapper: logs the (optionally redacted) command, raises CommandError."""

from __future__ import annotations

import logging
import shlex
import subprocess
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
