"""One event stream for progress: stages report here, displays subscribe.

Stages never print. They call `stage()`, `progress()`, `info()`, `warn()`
and `output()`; the tqdm display (`TqdmDisplay`) and the `--json` line output
(`JsonLines`) both read the same `Event`s.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import IO, Any, TypeVar

T = TypeVar("T")

Listener = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    """kind is one of: stage-start, stage-end, progress, info, warning, output, result."""

    kind: str
    message: str = ""
    stage: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


_listeners: list[Listener] = []
_lock = threading.Lock()
_current_stage = threading.local()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Add a listener; returns a function that removes it."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def emit(event: Event) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)


def _stage_name() -> str | None:
    return getattr(_current_stage, "name", None)


def in_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start `target` in a daemon thread whose events belong to the caller's stage."""
    stage_name = _stage_name()

    def run() -> None:
        _current_stage.name = stage_name
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def submit(func: Callable[[], T], name: str) -> Future[T]:
    """Run `func` in a thread (`in_thread`); its result or exception lands in the future."""
    future: Future[T] = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            result = func()
        except BaseException as exc:  # handed to whoever waits on the future
            future.set_exception(exc)
        else:
            future.set_result(result)

    in_thread(run, name)
    return future


def info(message: str, **data: Any) -> None:
    emit(Event("info", message, _stage_name(), data))


def warn(message: str, **data: Any) -> None:
    emit(Event("warning", message, _stage_name(), data))


def output(line: str, *, source: str = "agent") -> None:
    """A line of streamed output (agent step output, console)."""
    emit(Event("output", line, _stage_name(), {"source": source}))


def progress(done: float, total: float | None, *, unit: str = "B", label: str = "") -> None:
    """Progress of a long operation inside the current stage."""
    emit(Event("progress", label, _stage_name(), {"done": done, "total": total, "unit": unit}))


def result(message: str, **data: Any) -> None:
    emit(Event("result", message, _stage_name(), data))


@contextlib.contextmanager
def stage(name: str, message: str = "") -> Iterator[dict[str, Any]]:
    """Report a stage's start and end (with duration and status).

    Yields a dict the caller may fill with data for the stage-end event.
    """
    previous = _stage_name()
    _current_stage.name = name
    extra: dict[str, Any] = {}
    start = time.monotonic()
    emit(Event("stage-start", message or name, name))
    status = "failed"
    try:
        yield extra
        status = "ok"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        elapsed = round(time.monotonic() - start, 3)
        emit(
            Event(
                "stage-end", message or name, name, {"status": status, "seconds": elapsed, **extra}
            )
        )
        _current_stage.name = previous


class JsonLines:
    """`--json`: one JSON event a line on a stream."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.stream.write(event.to_json() + "\n")
            self.stream.flush()


class TqdmDisplay:
    """Human display: a line per stage, a tqdm bar for long operations.

    Agent and sanitize output is shown when `verbose_output` is set, the serial
    console only with `console`; both always reach the build's event log.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        verbose_output: bool = True,
        console: bool = False,
    ) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.stream = stream or sys.stderr
        self.verbose_output = verbose_output
        self.console = console
        self._bar: Any = None
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        self._tqdm.write(text, file=self.stream)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            if event.kind == "stage-start":
                self._close_bar()
                self._write(f"==> {event.message}")
            elif event.kind == "stage-end":
                self._close_bar()
                status = event.data.get("status", "?")
                mark = "ok" if status == "ok" else status.upper()
                self._write(f"<== {event.stage}: {mark} ({event.data.get('seconds', 0):.1f}s)")
            elif event.kind == "progress":
                total = event.data.get("total")
                if self._bar is None or self._bar.desc != (event.message or event.stage):
                    self._close_bar()
                    self._bar = self._tqdm(
                        total=total,
                        desc=event.message or event.stage,
                        unit=event.data.get("unit", "B"),
                        unit_scale=True,
                        file=self.stream,
                        leave=False,
                    )
                self._bar.n = event.data.get("done", 0)
                self._bar.refresh()
            elif event.kind == "warning":
                self._write(f"WARNING: {event.message}")
            elif event.kind == "output":
                shown = (
                    self.console if event.data.get("source") == "console" else self.verbose_output
                )
                if shown:
                    self._write(f"    {event.message}")
            elif event.kind in ("info", "result"):
                self._write(f"    {event.message}")
