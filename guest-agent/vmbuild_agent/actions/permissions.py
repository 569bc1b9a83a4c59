"""Owners and permission bits of files and folders."""

from __future__ import annotations

import os
from typing import Any

from vmbuild_agent.actions import Action, Field, as_bool, register
from vmbuild_agent.errors import StepFailed
from vmbuild_agent.fileops import apply_attributes


def _walk(path: str, recurse: bool) -> list[str]:
    paths = [path]
    if recurse:
        for folder, dirs, files in os.walk(path):
            paths.extend(os.path.join(folder, n) for n in dirs + files)
    return paths


class _Setter(Action):
    folder = False
    what = "owner"

    def run_item(self, item: dict, ctx: Any) -> None:
        path = str(item["path"])
        ok = os.path.isdir(path) if self.folder else os.path.isfile(path)
        if not ok:
            raise StepFailed(f"{self.name}: no such {'folder' if self.folder else 'file'} {path}")
        flag = item.get("recurse")
        recurse = self.folder and as_bool(item.get("recursive") if flag is None else flag)
        for target in _walk(path, recurse):
            if self.what == "owner":
                apply_attributes(target, owner=item["owner"], group=item.get("group"))
            else:
                apply_attributes(target, permissions=item["permissions"])


_OWNER = {"path": Field("string", required=True), "owner": Field("string", required=True),
          "group": Field("string")}  # fmt: skip
_MODE = {"path": Field("string", required=True), "permissions": Field("string", required=True)}
_RECURSE = {"recurse": Field("bool"), "recursive": Field("bool")}


@register
class SetFileOwner(_Setter):
    name = "SetFileOwner"
    fields = _OWNER


@register
class SetFolderOwner(_Setter):
    name = "SetFolderOwner"
    fields = {**_OWNER, **_RECURSE}
    folder = True


@register
class SetFilePermissions(_Setter):
    name = "SetFilePermissions"
    fields = _MODE
    what = "permissions"


@register
class SetFolderPermissions(_Setter):
    name = "SetFolderPermissions"
    fields = {**_MODE, **_RECURSE}
    folder = True
    what = "permissions"
