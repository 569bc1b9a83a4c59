"""The stage runner: cleanups run in reverse on success, failure and SIGTERM, shielded."""

from __future__ import annotations

import os
import signal
import time

import pytest

from vmbuild import events
from vmbuild.pipeline import BaseStage, run_stages


class Recorder(BaseStage):
    def __init__(self, name: str, log: list[str], action=None) -> None:
        self.name = name
        self.log = log
        self.action = action

    def run(self, ctx) -> None:
        self.log.append(f"run {self.name}")
        if self.action:
            self.action()

    def cleanup(self, ctx) -> None:
        self.log.append(f"cleanup {self.name}")


def test_cleanup_in_reverse_on_success():
    log: list[str] = []
    timings: dict[str, float] = {}
    run_stages([Recorder("a", log), Recorder("b", log)], None, timings=timings)
    assert log == ["run a", "run b", "cleanup b", "cleanup a"]
    assert set(timings) == {"a", "b"}


def test_failed_stage_is_cleaned_and_later_stages_do_not_run():
    log: list[str] = []

    def boom():
        raise RuntimeError("boom")

    stages = [Recorder("a", log), Recorder("b", log, boom), Recorder("c", log)]
    with pytest.raises(RuntimeError, match="boom"):
        run_stages(stages, None, timings={})
    assert log == ["run a", "run b", "cleanup b", "cleanup a"]


def test_sigterm_unwinds_like_ctrl_c():
    log: list[str] = []

    def terminate():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted long before this ends
        log.append("not reached")

    stages = [Recorder("a", log), Recorder("b", log, terminate), Recorder("c", log)]
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_stages(stages, None, timings={})
    assert time.monotonic() - start < 4
    assert log == ["run a", "run b", "cleanup b", "cleanup a"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_failing_cleanup_is_reported_and_others_still_run():
    log: list[str] = []
    seen: list[events.Event] = []
    unsubscribe = events.subscribe(seen.append)

    class BadCleanup(Recorder):
        def cleanup(self, ctx):
            raise OSError("disk gone")

    try:
        run_stages([Recorder("a", log), BadCleanup("b", log)], None, timings={})
    finally:
        unsubscribe()
    assert log == ["run a", "run b", "cleanup a"]
    warnings = [e.message for e in seen if e.kind == "warning"]
    assert any("cleanup of b failed: disk gone" in w for w in warnings)
    ends = [e for e in seen if e.kind == "stage-end"]
    assert [e.data["status"] for e in ends] == ["ok", "ok"]


def test_interruptible_block_may_end_in_another_thread():
    """A VM launched in the main thread is destroyed by a background teardown: its
    `interruptible` block ends there, which must neither raise nor drop the handler."""
    import contextlib

    from vmbuild.signals import interruptible

    original = signal.getsignal(signal.SIGTERM)
    stack = contextlib.ExitStack()
    stack.enter_context(interruptible())
    assert signal.getsignal(signal.SIGTERM) is not original
    done = events.submit(stack.close, "teardown")
    assert done.result(timeout=10) is None
    assert signal.getsignal(signal.SIGTERM) is not original, "left for run_stages to restore"
    signal.signal(signal.SIGTERM, original)
