"""Staging component documents into a folder ready to push to the guest.

Each component gets `documents/NN/` (recipe order, so names never clash) holding its
document and every document it runs through `ExecuteDocument` with a relative path,
laid out as on the host so those paths still resolve. `parameters/<phase>.json` is the
agent's `--parameters-file` for one phase (JSON, so values may hold any character),
keyed by document path. `parameters.json` lists each component with the sha256 of every
staged file (for the manifest) and its parameters. The folder appears complete or not
at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vmbuild.config.recipe import Component
from vmbuild.errors import BuildError
from vmbuild.fsutil import fsync_dir, sha256_file

PARAMETERS_FILE = "parameters.json"
PHASES = frozenset({"build", "validate", "test"})


@dataclass(frozen=True)
class StagedDocument:
    file: str  # the component's document, relative to the bundle root ('/' separators)
    source: Path
    sha256: str
    parameters: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)  # every staged file -> sha256
    name: str = ""  # the document's `name` (what the agent reports steps under)
    phases: frozenset[str] = PHASES  # the phases the document has

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "source": str(self.source),
            "sha256": self.sha256,
            "parameters": dict(self.parameters),
            "files": dict(self.files),
        }


@dataclass(frozen=True)
class Bundle:
    root: Path
    documents: tuple[StagedDocument, ...]

    def manifest(self) -> list[dict[str, Any]]:
        """What the build manifest records about the components."""
        return [d.to_dict() for d in self.documents]

    def phase_arguments(self, phase: str) -> list[str] | None:
        """The agent's `--documents`/`--parameters-file` to run `phase` of every document
        that has it, in one invocation from the bundle's root; None if none has it.

        Paths are relative to the bundle root (the agent runs there), and
        `parameters/<phase>.json` keys each document's parameters by that path.
        """
        docs = [d for d in self.documents if phase in d.phases]
        if not docs:
            return None
        args = ["--documents", ",".join(d.file for d in docs)]
        if any(d.parameters for d in docs):
            args += ["--parameters-file", _phase_parameters_file(phase)]
        return args


def _name_and_phases(document: Path) -> tuple[str, frozenset[str]]:
    """A document's `name` and phase names; all phases when unreadable (the agent's
    validator reports the problem)."""
    try:
        data = yaml.safe_load(document.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return "", PHASES
    if not isinstance(data, dict):
        return "", PHASES
    phases = data.get("phases")
    names = frozenset(str(p.get("name")) for p in phases or [] if isinstance(p, dict))
    return str(data.get("name") or ""), names


def _phase_parameters_file(phase: str) -> str:
    return f"parameters/{phase}.json"


def nested_documents(document: Path) -> list[Path]:
    """`document` and, recursively, the local documents its ExecuteDocument steps name.

    Targets with `{{ placeholders }}` or absolute paths (guest paths) are left alone;
    unreadable documents are skipped here (the agent's validator reports them).
    """
    found: list[Path] = []
    todo = [Path(os.path.abspath(document))]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.append(current)
        try:
            data = yaml.safe_load(current.read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        for target in _execute_document_targets(data):
            full = Path(os.path.abspath(current.parent / target))
            if full.is_file():
                todo.append(full)
    return found


def _execute_document_targets(data: Any) -> list[str]:
    targets = []
    phases = data.get("phases") if isinstance(data, dict) else None
    for phase in phases if isinstance(phases, list) else []:
        steps = phase.get("steps") if isinstance(phase, dict) else None
        for step in steps if isinstance(steps, list) else []:
            if not isinstance(step, dict) or step.get("action") != "ExecuteDocument":
                continue
            inputs = step.get("inputs")
            target = inputs.get("document") if isinstance(inputs, dict) else None
            if isinstance(target, str) and "{{" not in target and not os.path.isabs(target):
                targets.append(target)
    return targets


def _stage_one(component: Component, folder: Path, prefix: str) -> StagedDocument:
    documents = nested_documents(component.path)
    common = Path(os.path.commonpath([d.parent for d in documents]))
    files = {}
    for document in documents:
        relative = document.relative_to(common).as_posix()
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(document, folder / relative)
        files[f"{prefix}/{relative}"] = sha256_file(folder / relative)
    top = f"{prefix}/{documents[0].relative_to(common).as_posix()}"
    name, phases = _name_and_phases(folder / documents[0].relative_to(common))
    return StagedDocument(top, component.path, files[top], dict(component.parameters), files,
                          name, phases)  # fmt: skip


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def stage(components: Iterable[Component], dest: Path) -> Bundle:
    """Copy the documents and write parameters.json into `dest` (which must not exist yet)."""
    dest = Path(dest)
    if dest.exists():
        raise BuildError(f"cannot stage components: {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        staged = []
        (tmp / "parameters").mkdir()
        for i, component in enumerate(components, start=1):
            prefix = f"documents/{i:02d}"
            staged.append(_stage_one(component, tmp / prefix, prefix))
        bundle_docs = tuple(staged)
        for phase in PHASES:  # keyed by path, for the documents that have the phase
            keyed = {d.file: d.parameters for d in bundle_docs
                     if d.parameters and phase in d.phases}  # fmt: skip
            _write_json(tmp / _phase_parameters_file(phase), keyed)
        _write_json(tmp / PARAMETERS_FILE, {"documents": [d.to_dict() for d in bundle_docs]})
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"cannot stage components into {dest}: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(dest, bundle_docs)
