"""Where vmbuild keeps its cache and state on the build host.

`VMBUILD_CACHE` overrides the cache root (default `$XDG_CACHE_HOME/vmbuild`,
else `~/.cache/vmbuild`). Everything under it may be deleted at any time.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("VMBUILD_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "vmbuild"


def cache_dir(kind: str) -> Path:
    """A sub-folder of the cache (`downloads`, `bootstrap`, `warm`, ...), created on demand."""
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
