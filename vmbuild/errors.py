"""Named errors; each carries the exit code the CLI uses and an optional hint.

Exit codes are fixed: 2 for invalid input, 1 for a failed build, 130 for an interrupt.
"""

from __future__ import annotations


class VmbuildError(Exception):
    """Base of every expected failure: printed as one line (plus hint), no traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(VmbuildError):
    """The user's input (recipe, component, flag, store config) is invalid."""

    exit_code = 2


class BuildError(VmbuildError):
    """The build ran and failed (a phase, a timeout, a tool)."""

    exit_code = 1


class CommandError(BuildError):
    """An external command exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, stderr: str, stdout: str = "") -> None:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        super().__init__(f"command failed (exit {returncode}): {' '.join(argv)}\n{tail}".rstrip())
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout


class Interrupted(VmbuildError):
    """Ctrl-C or SIGTERM arrived; cleanup ran."""

    exit_code = 130
