"""The bootstrap cache: one folder per key with `image.qcow2` and `meta.json`.

The key covers the definition's canonical content, the mirror (it is written
into the image's apt sources) and `BOOTSTRAP_VERSION`. An fcntl lock per key
makes concurrent bootstraps of the same definition build once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vmbuild import disk, events
from vmbuild.bootstrap.build import build_image
from vmbuild.bootstrap.definition import Definition, load_definition
from vmbuild.bootstrap.mirror import resolve_mirror
from vmbuild.fsutil import atomic_path, cache_key, sha256_file, write_json
from vmbuild.paths import cache_dir

# Bump whenever the assembly changes what ends up in the image.
BOOTSTRAP_VERSION = 2
IMAGE_NAME = "image.qcow2"
META_NAME = "meta.json"


def image_key(definition: Definition, mirror: str) -> str:
    """Cache key of the image `definition` yields from `mirror`."""
    return cache_key(
        {"definition": definition.data, "mirror": mirror, "bootstrap": BOOTSTRAP_VERSION}
    )


def image_folder(definition: Definition, mirror: str) -> Path:
    return cache_dir("bootstrap") / image_key(definition, mirror)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_meta(image: Path) -> dict[str, Any] | None:
    """The `meta.json` beside a cached image, or None if it is missing or unreadable."""
    try:
        return json.loads((image.parent / META_NAME).read_text())
    except (OSError, ValueError):
        return None


def ensure_image(
    definition_path: str | Path, *, mirror: str | None = None, force: bool = False
) -> Path:
    """Path of the cached, ready qcow2 for a definition; builds it first if needed.

    Never modify the returned image: use it as a backing file (`vmbuild.disk.overlay`).
    """
    definition = load_definition(definition_path)
    mirror_url = resolve_mirror(definition.release, mirror)
    folder = image_folder(definition, mirror_url)
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / IMAGE_NAME
    with _locked(folder / ".lock"):
        if image.is_file() and read_meta(image) is not None and not force:
            events.info(f"using cached base image {image}", path=str(image), cached=True)
            return image
        started = time.monotonic()
        events.info(f"bootstrapping {definition.name} from {mirror_url}", mirror=mirror_url)
        with atomic_path(image) as tmp:
            stats = build_image(definition, mirror_url, tmp)
            info = disk.info(tmp)
            meta = {
                "definition": str(Path(definition_path).resolve()),
                "content": definition.data,
                "name": definition.name,
                "mirror": mirror_url,
                "key": folder.name,
                "bootstrap_version": BOOTSTRAP_VERSION,
                "sha256": sha256_file(tmp),
                "virtual_size": info.virtual_size,
                "file_size": tmp.stat().st_size,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.monotonic() - started, 1),
                **stats,
            }
            write_json(folder / META_NAME, meta)
        events.info(f"base image ready: {image}", path=str(image), cached=False)
    return image
