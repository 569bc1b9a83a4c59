"""File and folder actions: create, append, copy, move, delete, link, list, read, re-encode."""

from __future__ import annotations

import fnmatch
import glob
import os
import shutil
from typing import Any

from vmbuild_agent.actions import Action, Field, as_bool, register
from vmbuild_agent.errors import StepFailed
from vmbuild_agent.fileops import apply_attributes, atomic_write, codec, detect_encoding, fail

_ATTRS = {
    "owner": Field("string"),
    "group": Field("string"),
    "permissions": Field("string"),
}


@register
class CreateFile(Action):
    name = "CreateFile"
    fields = {
        "path": Field("string", required=True),
        "content": Field("string", default=""),
        "encoding": Field("string", default="utf8"),
        "overwrite": Field("bool", default=True),
        **_ATTRS,
    }

    def run_item(self, item: dict, ctx: Any) -> None:
        path = str(item["path"])
        if os.path.isdir(path):
            raise StepFailed(f"CreateFile: {path} is a folder")
        if os.path.lexists(path) and not as_bool(item["overwrite"], True):
            raise StepFailed(f"CreateFile: {path} exists and overwrite is false")
        data = str(item["content"] if item["content"] is not None else "")
        try:
            with atomic_write(path) as fh:
                fh.write(data.encode(codec(item["encoding"])))
        except OSError as exc:
            raise fail(path, exc, "CreateFile: cannot write") from None
        apply_attributes(path, item.get("owner"), item.get("group"), item.get("permissions"))


@register
class AppendFile(Action):
    name = "AppendFile"
    fields = {
        "path": Field("string", required=True),
        "content": Field("string", required=True),
        "encoding": Field("string", default="utf8"),
    }

    def run_item(self, item: dict, ctx: Any) -> None:
        path = str(item["path"])
        if not os.path.isfile(path):
            raise StepFailed(f"AppendFile: no such file {path}")
        try:
            with open(path, "ab") as fh:
                fh.write(str(item["content"]).encode(codec(item["encoding"])))
        except OSError as exc:
            raise fail(path, exc, "AppendFile: cannot write") from None


def _copy_or_move(action: str, item: dict, folder: bool) -> None:
    source, dest = str(item["source"]), str(item["destination"])
    overwrite = as_bool(item.get("overwrite"), False)
    exists = os.path.isdir(source) if folder else os.path.isfile(source)
    if not exists:
        raise StepFailed(f"{action}: no such {'folder' if folder else 'file'} {source}")
    if not folder and os.path.isdir(dest):
        dest = os.path.join(dest, os.path.basename(source))
    if os.path.lexists(dest) and not overwrite:
        raise StepFailed(f"{action}: {dest} exists and overwrite is false")
    try:
        parent = os.path.dirname(os.path.abspath(dest))
        os.makedirs(parent, exist_ok=True)
        if action.startswith("Copy"):
            if folder:
                shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(source, dest)
        else:
            if os.path.lexists(dest):
                if os.path.isdir(dest) and not os.path.islink(dest):
                    shutil.rmtree(dest)
                else:
                    os.unlink(dest)
            shutil.move(source, dest)
    except OSError as exc:
        raise fail(source, exc, f"{action}: cannot {action[:4].lower()}") from None


_COPY_FIELDS = {
    "source": Field("string", required=True),
    "destination": Field("string", required=True),
    "overwrite": Field("bool", default=False),
}


@register
class CopyFile(Action):
    name = "CopyFile"
    fields = _COPY_FIELDS

    def run_item(self, item: dict, ctx: Any) -> None:
        _copy_or_move(self.name, item, folder=False)


@register
class CopyFolder(Action):
    name = "CopyFolder"
    fields = _COPY_FIELDS

    def run_item(self, item: dict, ctx: Any) -> None:
        _copy_or_move(self.name, item, folder=True)


@register
class MoveFile(Action):
    name = "MoveFile"
    fields = _COPY_FIELDS

    def run_item(self, item: dict, ctx: Any) -> None:
        _copy_or_move(self.name, item, folder=False)


@register
class MoveFolder(Action):
    name = "MoveFolder"
    fields = _COPY_FIELDS

    def run_item(self, item: dict, ctx: Any) -> None:
        _copy_or_move(self.name, item, folder=True)


def _matches(path: str) -> list[str]:
    if any(ch in path for ch in "*?["):
        return sorted(glob.glob(path))
    return [path]


@register
class DeleteFile(Action):
    """Deletes a file (wildcards allowed in the file name)."""

    name = "DeleteFile"
    fields = {"path": Field("string", required=True)}

    def run_item(self, item: dict, ctx: Any) -> None:
        targets = _matches(str(item["path"]))
        if not targets or not all(os.path.lexists(t) for t in targets):
            raise StepFailed(f"DeleteFile: no such file {item['path']}")
        for target in targets:
            if os.path.isdir(target) and not os.path.islink(target):
                raise StepFailed(f"DeleteFile: {target} is a folder (use DeleteFolder)")
            try:
                os.unlink(target)
            except OSError as exc:
                raise fail(target, exc, "DeleteFile: cannot delete") from None


@register
class DeleteFolder(Action):
    """Deletes a folder; a non-empty one only with `force: true`."""

    name = "DeleteFolder"
    fields = {"path": Field("string", required=True), "force": Field("bool", default=False)}

    def run_item(self, item: dict, ctx: Any) -> None:
        path = str(item["path"])
        if not os.path.isdir(path) or os.path.islink(path):
            raise StepFailed(f"DeleteFolder: no such folder {path}")
        try:
            if as_bool(item["force"]):
                shutil.rmtree(path)
            else:
                os.rmdir(path)
        except OSError as exc:
            hint = " (set force: true to delete its content)" if os.listdir(path) else ""
            raise StepFailed(f"DeleteFolder: cannot delete {path}: {exc.strerror}{hint}") from None


@register
class CreateFolder(Action):
    name = "CreateFolder"
    fields = {"path": Field("string", required=True), "overwrite": Field("bool"), **_ATTRS}

    def run_item(self, item: dict, ctx: Any) -> None:
        path = str(item["path"])
        if os.path.lexists(path) and not os.path.isdir(path):
            raise StepFailed(f"CreateFolder: {path} exists and is not a folder")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise fail(path, exc, "CreateFolder: cannot create") from None
        apply_attributes(path, item.get("owner"), item.get("group"), item.get("permissions"))


@register
class CreateSymlink(Action):
    """Creates `destination` as a symbolic link pointing to `source`."""

    name = "CreateSymlink"
    fields = {
        "source": Field("string", required=True),
        "destination": Field("string", required=True),
        "force": Field("bool", default=False),
    }

    def run_item(self, item: dict, ctx: Any) -> None:
        source, dest = str(item["source"]), str(item["destination"])
        if os.path.lexists(dest):
            if not as_bool(item["force"]):
                raise StepFailed(f"CreateSymlink: {dest} exists and force is false")
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise StepFailed(f"CreateSymlink: {dest} is a folder")
            os.unlink(dest)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
            os.symlink(source, dest)
        except OSError as exc:
            raise fail(dest, exc, "CreateSymlink: cannot create") from None


@register
class ListFiles(Action):
    """Lists files under `path` (optionally matching a glob), output `files`."""

    name = "ListFiles"
    fields = {
        "path": Field("string", required=True),
        "fileNamePattern": Field("string"),
        "recursion": Field("bool", default=False),
        "maxDepth": Field("int"),
        "includeFolders": Field("bool", default=False),
        "followSymlinks": Field("bool", default=False),
    }
    outputs = ("files",)

    def run_item(self, item: dict, ctx: Any) -> list:
        root = str(item["path"])
        if not os.path.isdir(root):
            raise StepFailed(f"ListFiles: no such folder {root}")
        pattern = item.get("fileNamePattern")
        recursive = as_bool(item["recursion"]) or item.get("maxDepth") is not None
        max_depth = int(item["maxDepth"]) if item.get("maxDepth") is not None else None
        found: list[str] = []
        base_depth = root.rstrip(os.sep).count(os.sep)
        for folder, dirs, files in os.walk(root, followlinks=as_bool(item["followSymlinks"])):
            depth = folder.rstrip(os.sep).count(os.sep) - base_depth
            names = list(files) + (list(dirs) if as_bool(item["includeFolders"]) else [])
            for name in names:
                if pattern is None or fnmatch.fnmatch(name, str(pattern)):
                    found.append(os.path.join(folder, name))
            if not recursive or (max_depth is not None and depth + 1 >= max_depth):
                dirs[:] = []
        return sorted(found)

    def combine(self, results: list) -> dict:
        return {"files": [f for chunk in results for f in chunk]}


@register
class ReadFile(Action):
    """Reads a text file; output `content`."""

    name = "ReadFile"
    shape = "mapping"
    fields = {"path": Field("string", required=True), "encoding": Field("string")}
    outputs = ("content",)

    def run_item(self, item: dict, ctx: Any) -> str:
        path = str(item["path"])
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise fail(path, exc, "ReadFile: cannot read") from None
        name = codec(item["encoding"]) if item.get("encoding") else detect_encoding(data)
        try:
            return data.decode(name or "utf-8")
        except UnicodeDecodeError as exc:
            raise StepFailed(f"ReadFile: {path} is not valid {name or 'utf-8'}: {exc}") from None

    def combine(self, results: list) -> dict:
        return {"content": results[0]}


@register
class SetFileEncoding(Action):
    """Re-encodes a text file (its current encoding is found from its BOM, else UTF-8)."""

    name = "SetFileEncoding"
    fields = {"path": Field("string", required=True), "encoding": Field("string", default="utf8")}

    def run_item(self, item: dict, ctx: Any) -> None:
        path = str(item["path"])
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise fail(path, exc, "SetFileEncoding: cannot read") from None
        current = detect_encoding(data) or "utf-8"
        try:
            text = data.decode(current)
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        target = codec(item["encoding"])
        try:
            encoded = text.encode(target)
        except UnicodeEncodeError as exc:
            raise StepFailed(
                f"SetFileEncoding: {path} cannot be encoded as {target}: {exc}"
            ) from None
        mode = os.stat(path).st_mode & 0o7777
        with atomic_write(path) as fh:
            fh.write(encoded)
        os.chmod(path, mode)
