"""SIGTERM handled like Ctrl-C, and cleanup shielded from a second signal.

`interruptible()` makes SIGTERM raise KeyboardInterrupt in the main thread, so one
code path (ExitStack unwinding) cleans up after both. `shielded()` holds signals
back while cleanup runs, so a second Ctrl-C cannot leave a half-removed VM; the
held signal is re-raised once cleanup is done.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only).

    A block entered in the main thread may end in another (a VM destroyed in the
    background): the handler is then left in place; `run_stages`, whose own block
    encloses every VM, restores the original."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Defer SIGINT/SIGTERM until the block ends, then raise KeyboardInterrupt once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []  # signal numbers held back

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    saved: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        saved[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if pending:
        raise KeyboardInterrupt(f"signal {pending[0]} during cleanup")
