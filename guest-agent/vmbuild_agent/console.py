"""Where step output goes while it runs: stderr (live) and console.log, one lock for both."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import IO


class Console:
    """Line-oriented sink shared by every step (steps may write from worker threads)."""

    def __init__(self, log_path: Path | None = None, stream: IO[str] | bool | None = True) -> None:
        # stream=True: live output on stderr; None/False: console.log only (--quiet)
        self.stream: IO[str] | None = sys.stderr if stream is True else (stream or None)
        self.lock = threading.Lock()
        self.file: IO[str] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def line(self, text: str) -> None:
        with self.lock:
            if self.stream is not None:
                self.stream.write(text + "\n")
                self.stream.flush()
            if self.file is not None:
                self.file.write(text + "\n")
                self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
