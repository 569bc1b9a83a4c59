"""A local (or mounted) directory: sparse copy to a temporary name, fsync, rename."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vmbuild.fsutil import atomic_path, sha256_file
from vmbuild.stores._sparse import copy_sparse
from vmbuild.stores.base import ImageRef, Item, LocalFile, Progress, Remote, Store, store_schema


class DirectoryStore(Store):
    TYPE = "directory"
    LOCAL_PATHS = ("path",)
    SCHEMA = store_schema(
        TYPE,
        {
            "path": {"type": "string", "minLength": 1, "description": "target folder"},
            "prefix": {
                "type": "string",
                "description": "sub-folder template, e.g. '{name}/{version}/'",
            },
        },
        required=["path"],
    )

    def __init__(self, config: dict[str, Any], where: str) -> None:
        super().__init__(config, where)
        self.root = Path(config["path"]).expanduser()
        self.prefix = ""

    def items(self, files: list[LocalFile], image: ImageRef) -> list[Item]:
        self.prefix = self.render("prefix", "", image)
        return [Item(self.prefix + f.name, [f]) for f in files]

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise self.error("path", f"{self.root} is not a directory")

    def location(self, item: Item | None = None) -> str:
        return str(self.root / item.name) if item else str(self.root)

    def upload(self, item: Item) -> None:
        progress = Progress(f"{self.name}: {item.name}", item.file.size)
        try:
            with atomic_path(self.root / item.name) as tmp:
                copy_sparse(item.file.path, tmp, progress)
        except PermissionError as exc:
            raise self.error("path", f"cannot write to {self.root} ({exc.strerror})") from None

    def stat(self, item: Item) -> Remote | None:
        path = self.root / item.name
        if not path.is_file():
            return None
        return Remote(item.name, path.stat().st_size)

    def matches(self, item: Item, remote: Remote) -> bool:
        if remote.size != item.file.size:
            return False
        return sha256_file(self.root / item.name) == item.file.sha256

    def list(self) -> list[Remote]:
        if not self.root.is_dir():
            return []
        return [
            Remote(str(p.relative_to(self.root)), p.stat().st_size)
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not p.name.endswith(".part")
        ]

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)
