"""The store interface: upload, verify, list, delete, and the shared publish flow around them.

A store module subclasses `Store`, declares `TYPE`, `SCHEMA` (built with
`store_schema`) and the formats it `ACCEPTS`, and implements the hooks. `Store.publish`
does the rest for every store alike: skip an identical object already there, upload
with retries and backoff, verify after transfer, and remove what failed verification.
Every `upload` must make an object visible under its final name only once it is
complete (temporary name and rename, multipart completion, a manifest put last, ...).
"""

from __future__ import annotations

import builtins
import functools
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from vmbuild import events
from vmbuild.errors import BuildError, InputError
from vmbuild.formats import FORMATS

T = TypeVar("T")


@dataclass(frozen=True)
class LocalFile:
    """One output of the build, as the manifest lists it."""

    path: Path
    format: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class ImageRef:
    """What is being distributed; its fields fill name templates (`{name}-{version}`)."""

    name: str
    version: str
    build_id: str

    def fields(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "build_id": self.build_id}


@dataclass
class Item:
    """One unit a store publishes under one name: a file, or (OCI) a tag holding files."""

    name: str
    files: list[LocalFile]

    @property
    def file(self) -> LocalFile:
        return self.files[0]


@dataclass
class Remote:
    """What a store holds under a name: size and the store's own digest, when it has them."""

    name: str
    size: int | None = None
    digest: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


COMMON_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"},
    "formats": {
        "type": "array",
        "items": {"enum": list(FORMATS)},
        "uniqueItems": True,
        "minItems": 1,
        "description": "outputs that go to this store (default: every one it can take)",
    },
    "retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
}


def store_schema(
    type_: str, properties: dict[str, Any], required: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON Schema of one store's config: common fields plus its own, nothing else."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "type", *required],
        "properties": {**COMMON_PROPERTIES, "type": {"const": type_}, **properties},
    }


class Progress:
    """Byte progress of one transfer as `events.progress`, throttled to about 1% steps."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._next = 0
        self._step = max(1, total // 100)
        self._lock = threading.Lock()  # parallel transfers report into one counter

    def __call__(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            if self.done < self._next and self.done < self.total:
                return
            self._next = self.done + self._step
            done = self.done
        events.progress(done, self.total, label=self.label)


class Store(ABC):
    """A place images are distributed to; one subclass per store type."""

    TYPE: ClassVar[str]
    SCHEMA: ClassVar[dict[str, Any]]
    ACCEPTS: tuple[str, ...] = FORMATS  # a store may narrow it per instance (by mode)
    # Config fields naming files on this host; a recipe's relative ones are resolved
    # against the recipe's folder.
    LOCAL_PATHS: ClassVar[tuple[str, ...]] = ()
    BACKOFF: ClassVar[float] = 1.0  # seconds before the first retry; doubles each time

    def __init__(self, config: dict[str, Any], where: str) -> None:
        self.config = config
        self.where = where
        self.name: str = config["name"]
        self.retries: int = int(config.get("retries", 3))

    # -- naming and errors ---------------------------------------------------------------
    def error(self, field_name: str | None, message: str, hint: str | None = None) -> InputError:
        """An InputError naming this store and the field at fault."""
        where = f"{self.where}: {field_name}" if field_name else self.where
        return InputError(f"{where}: {message}", hint=hint)

    def render(self, field_name: str, default: str, image: ImageRef, **extra: str) -> str:
        """Fill a name template from the config (`{name}`, `{version}`, `{build_id}`, ...)."""
        template = str(self.config.get(field_name, default))
        values = {**image.fields(), **extra}
        try:
            return template.format_map(values)
        except (KeyError, ValueError, IndexError) as exc:
            raise self.error(
                field_name, f"bad template {template!r} ({exc})", hint=f"fields: {sorted(values)}"
            ) from None

    # -- hooks every store implements ------------------------------------------------------
    def check(self) -> None:  # noqa: B027 - optional hook
        """Preflight: reach the store and check config and credentials; raise InputError."""

    def items(self, files: list[LocalFile], image: ImageRef) -> list[Item]:
        """The units to publish; by default one per file, named after the file."""
        return [Item(f.name, [f]) for f in files]

    @abstractmethod
    def location(self, item: Item | None = None) -> str:
        """A URL-like location of the store, or of one item in it."""

    @abstractmethod
    def upload(self, item: Item) -> None:
        """Transfer an item; visible under its final name only once complete."""

    @abstractmethod
    def stat(self, item: Item) -> Remote | None:
        """What the store holds under the item's name, or None."""

    @abstractmethod
    def matches(self, item: Item, remote: Remote) -> bool:
        """True when `remote` is identical to the local item (size and digest)."""

    def verify(self, item: Item) -> bool:
        """Check an upload after transfer (default: stat and compare)."""
        remote = self.stat(item)
        return remote is not None and self.matches(item, remote)

    @abstractmethod
    def list(self) -> list[Remote]:
        """Everything this store's config points at (prefix, repository, pool, owner)."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove an object by name; no error when it is already gone."""

    def is_transient(self, exc: BaseException) -> bool:
        """Whether a failed transfer is worth retrying (network hiccups, throttling)."""
        return isinstance(exc, ConnectionError | TimeoutError)

    def details(self, item: Item) -> dict[str, Any]:
        """Extra result fields for an item (an AMI id, a manifest digest)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # -- the shared flow ------------------------------------------------------------------
    def select(self, files: Sequence[LocalFile]) -> builtins.list[LocalFile]:
        """The build outputs this store takes: its `formats`, else all it accepts."""
        by_format = {f.format: f for f in files}
        wanted = self.config.get("formats")
        if wanted is None:
            chosen = [f for f in files if f.format in self.ACCEPTS]
            if not chosen:
                raise self.error(
                    "formats",
                    f"the build has none of the formats a {self.TYPE} store takes "
                    f"({', '.join(self.ACCEPTS)}); it has {', '.join(by_format) or 'none'}",
                )
            return chosen
        chosen = []
        for i, fmt in enumerate(wanted):
            if fmt not in self.ACCEPTS:
                raise self.error(
                    f"formats[{i}]",
                    f"a {self.TYPE} store cannot take {fmt}",
                    hint=f"it takes {', '.join(self.ACCEPTS)}",
                )
            if fmt not in by_format:
                raise self.error(
                    f"formats[{i}]",
                    f"the build has no {fmt} output",
                    hint="add it to the recipe's output.formats and rebuild",
                )
            chosen.append(by_format[fmt])
        return chosen

    def retry(self, what: str, fn: Callable[[], T]) -> T:
        """Call `fn`, retrying transient failures with exponential backoff and jitter."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if attempt >= self.retries or not self.is_transient(exc):
                    raise
                delay = self.BACKOFF * (2**attempt) * (0.5 + random.random())
                attempt += 1
                events.warn(
                    f"{self.name}: {what} failed ({type(exc).__name__}); "
                    f"retry {attempt}/{self.retries} in {delay:.1f}s"
                )
                time.sleep(delay)

    def publish(self, files: Sequence[LocalFile], image: ImageRef) -> dict[str, Any]:
        """Upload every item not already there, verify each, and report."""
        objects = []
        for item in self.items(list(files), image):
            existing = self.retry(f"lookup of {item.name}", functools.partial(self.stat, item))
            skipped = existing is not None and self.matches(item, existing)
            if skipped:
                events.info(f"{self.name}: {item.name} is already there, identical; skipped")
            else:
                events.info(f"{self.name}: uploading {item.name} to {self.location(item)}")
                self.retry(f"upload of {item.name}", functools.partial(self.upload, item))
                if not self.retry(f"check of {item.name}", functools.partial(self.verify, item)):
                    self.delete(item.name)
                    raise BuildError(
                        f"{self.where}: {item.name} failed verification after upload; removed"
                    )
            objects.append(
                {
                    "name": item.name,
                    "url": self.location(item),
                    "formats": [f.format for f in item.files],
                    "size": sum(f.size for f in item.files),
                    "sha256": item.file.sha256 if len(item.files) == 1 else None,
                    "verified": True,
                    "skipped": skipped,
                    **self.details(item),
                }
            )
        return {
            "store": self.name,
            "type": self.TYPE,
            "location": self.location(),
            "objects": objects,
            "verified": all(o["verified"] for o in objects),
            "skipped": all(o["skipped"] for o in objects),
        }

    def plan(self, files: Sequence[LocalFile], image: ImageRef) -> dict[str, Any]:
        """What `publish` would do, without connecting (for --dry-run)."""
        return {
            "store": self.name,
            "type": self.TYPE,
            "location": self.location(),
            "objects": [
                {
                    "name": item.name,
                    "url": self.location(item),
                    "formats": [f.format for f in item.files],
                    "size": sum(f.size for f in item.files),
                }
                for item in self.items(list(files), image)
            ],
            "dry_run": True,
        }
