"""The stage runner: each stage's cleanup is registered before it runs and unwound in reverse.

As in Packer's step runner, a stage that fails still has its cleanup run, and so do
all the stages before it, on success, failure, Ctrl-C and SIGTERM. Cleanups run
shielded from further signals, and a failing cleanup is reported without stopping
the others.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from vmbuild import events
from vmbuild.signals import interruptible, shielded

log = logging.getLogger(__name__)


class Stage(Protocol):
    """A pipeline stage: `run` does the work, `cleanup` undoes what must not outlive the build."""

    name: str
    title: str

    def run(self, ctx: Any) -> None: ...

    def cleanup(self, ctx: Any) -> None: ...


class BaseStage:
    """Default no-op cleanup; subclasses set `name`, `title` and implement `run`."""

    name = "stage"
    title = ""

    def run(self, ctx: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def cleanup(self, ctx: Any) -> None:
        return None


def safe_cleanup(label: str, func: Callable[[], Any]) -> None:
    """Run one cleanup action shielded from signals; report, never raise, on failure."""
    try:
        with shielded():
            func()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a cleanup failure must not hide the build's own error
        log.debug("cleanup %s failed", label, exc_info=True)
        events.warn(f"cleanup of {label} failed: {exc}")


def run_stages(stages: Sequence[Stage], ctx: Any, *, timings: dict[str, float]) -> None:
    """Run stages in order; cleanups unwind in reverse whatever happens.

    `timings` receives each stage's duration in seconds. Before cleanups run after
    a failure, `ctx.error` (when ctx has that attribute) holds the exception, so a
    cleanup can tell success from failure (to keep a failed VM, say).
    """
    with interruptible(), contextlib.ExitStack() as stack:
        try:
            for stage in stages:
                stack.callback(safe_cleanup, stage.name, functools.partial(stage.cleanup, ctx))
                start = time.monotonic()
                try:
                    with events.stage(stage.name, stage.title or stage.name):
                        stage.run(ctx)
                finally:
                    timings[stage.name] = round(time.monotonic() - start, 3)
        except BaseException as exc:
            if hasattr(ctx, "error"):
                ctx.error = exc
            raise
