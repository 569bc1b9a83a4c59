"""Named errors of the agent and the exit codes the CLI maps them to."""

from __future__ import annotations

from dataclasses import asdict, dataclass

EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_NOT_STARTED = 3  # --gate stayed closed
EXIT_REBOOT = 194


@dataclass
class Problem:
    """One validation finding, located as precisely as the document allows."""

    document: str
    message: str
    phase: str | None = None
    step: str | None = None
    line: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        where = self.document + (f":{self.line}" if self.line else "")
        parts = [p for p in (self.phase, self.step) if p]
        scope = f" [{'/'.join(parts)}]" if parts else ""
        return f"{where}{scope}: {self.message}"


class AgentError(Exception):
    """An expected failure; `exit_code` says how the CLI exits."""

    exit_code = EXIT_FAILED


class InvalidInput(AgentError):
    """Bad documents, parameters or flags: nothing was executed."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class StepFailed(AgentError):
    """An action failed; the message is the step's failureMessage."""


class StepTimeout(StepFailed):
    """A step ran past its timeoutSeconds."""


class RebootRequested(AgentError):
    """A step asked for a reboot; `rerun` says whether the step runs again afterwards."""

    exit_code = EXIT_REBOOT

    def __init__(self, message: str, rerun: bool) -> None:
        super().__init__(message)
        self.rerun = rerun
        self.frames: list | None = None  # where to resume, set by the innermost step
