"""Staging component documents into a folder ready to push to the guest.

The folder holds `documents/NN-<name>` (in recipe order, so names never clash) and
`parameters.json`, which lists each document with its sha256 (for the manifest) and
the parameters it runs with. The folder appears complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmbuild.components.agent import parameters_arg
from vmbuild.config.recipe import Component
from vmbuild.errors import BuildError
from vmbuild.fsutil import fsync_dir, sha256_file

PARAMETERS_FILE = "parameters.json"


@dataclass(frozen=True)
class StagedDocument:
    file: str  # relative to the bundle root, with '/' separators
    source: Path
    sha256: str
    parameters: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "source": str(self.source),
            "sha256": self.sha256,
            "parameters": dict(self.parameters),
        }


@dataclass(frozen=True)
class Bundle:
    root: Path
    documents: tuple[StagedDocument, ...]

    def manifest(self) -> list[dict[str, Any]]:
        """What the build manifest records about the components."""
        return [d.to_dict() for d in self.documents]

    def agent_arguments(self, remote_root: str) -> list[list[str]]:
        """Per document, the agent's `--documents`/`--parameters` with the bundle at `remote_root`.

        Documents run one agent invocation each, because parameters belong to one document.
        """
        argv = []
        for doc in self.documents:
            args = ["--documents", f"{remote_root.rstrip('/')}/{doc.file}"]
            if doc.parameters:
                args += ["--parameters", parameters_arg(doc.parameters)]
            argv.append(args)
        return argv


def stage(components: Iterable[Component], dest: Path) -> Bundle:
    """Copy the documents and write parameters.json into `dest` (which must not exist yet)."""
    dest = Path(dest)
    if dest.exists():
        raise BuildError(f"cannot stage components: {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        (tmp / "documents").mkdir()
        staged = []
        for i, component in enumerate(components, start=1):
            name = f"documents/{i:02d}-{component.path.name}"
            shutil.copyfile(component.path, tmp / name)
            staged.append(
                StagedDocument(name, component.path, sha256_file(tmp / name), component.parameters)
            )
        bundle_docs = tuple(staged)
        with open(tmp / PARAMETERS_FILE, "w") as fh:
            json.dump({"documents": [d.to_dict() for d in bundle_docs]}, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"cannot stage components into {dest}: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(dest, bundle_docs)
