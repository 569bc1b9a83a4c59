"""File, folder, owner and permission actions, run through the agent on a temporary tree."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.unit.agent.helpers import Agent, simple


def step(name: str, action: str, inputs, **extra) -> dict:
    return {"name": name, "action": action, "inputs": inputs, **extra}


def test_file_and_folder_actions(agent: Agent, tmp_path: Path):
    t = tmp_path / "tree"
    doc = simple(
        step("MakeDirs", "CreateFolder", [{"path": f"{t}/a/b", "permissions": "0750"}]),
        step(
            "Make",
            "CreateFile",
            [
                {"path": f"{t}/a/hello.txt", "content": "hello\n", "permissions": 640},
                {"path": f"{t}/a/utf16.txt", "content": "wide", "encoding": "utf-16"},
            ],
        ),
        step("Append", "AppendFile", [{"path": f"{t}/a/hello.txt", "content": "more\n"}]),
        step("Copy", "CopyFile", [{"source": f"{t}/a/hello.txt", "destination": f"{t}/copy.txt"}]),
        step("CopyDir", "CopyFolder", [{"source": f"{t}/a", "destination": f"{t}/a2"}]),
        step("Move", "MoveFile", [{"source": f"{t}/copy.txt", "destination": f"{t}/moved.txt"}]),
        step("MoveDir", "MoveFolder", [{"source": f"{t}/a2", "destination": f"{t}/a3"}]),
        step("Link", "CreateSymlink", [{"source": f"{t}/moved.txt", "destination": f"{t}/link"}]),
        step("Read", "ReadFile", {"path": f"{t}/link"}),
        step("ReadWide", "ReadFile", {"path": f"{t}/a/utf16.txt"}),
        step("ReadChained", "ReadFile", {"path": "{{ build.Make.inputs[1].path }}"}),
        step("Encode", "SetFileEncoding", [{"path": f"{t}/a/utf16.txt", "encoding": "utf8"}]),
        step(
            "List", "ListFiles", [{"path": str(t), "fileNamePattern": "*.txt", "recursion": True}]
        ),
        step("ListTop", "ListFiles", [{"path": str(t)}]),
        step("Mode", "SetFilePermissions", [{"path": f"{t}/moved.txt", "permissions": "0600"}]),
        step(
            "ModeDir",
            "SetFolderPermissions",
            [{"path": f"{t}/a3", "permissions": "0700", "recurse": True}],
        ),
        step("Owner", "SetFileOwner", [{"path": f"{t}/moved.txt", "owner": "nobody"}]),
        step("OwnerDir", "SetFolderOwner", [{"path": f"{t}/a3", "owner": "65534", "group": "0"}]),
        step("Stat", "ExecuteBash", {"commands": [f"stat -c '%u:%g %a' {t}/a3 {t}/a3/hello.txt"]}),
        step("Delete", "DeleteFile", [{"path": f"{t}/a3/*.txt"}]),
        step("DeleteDir", "DeleteFolder", [{"path": f"{t}/a3", "force": True}]),
    )
    result = agent.run(doc)
    assert result.code == 0, result.stderr + result.stdout
    assert (t / "a/hello.txt").read_text() == "hello\nmore\n"
    assert stat.S_IMODE((t / "a/hello.txt").stat().st_mode) == 0o640
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((t / "a/utf16.txt").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((t / "a/b").stat().st_mode) == 0o750
    assert not (t / "copy.txt").exists() and (t / "moved.txt").read_text() == "hello\nmore\n"
    assert not (t / "a2").exists()
    assert os.readlink(t / "link") == f"{t}/moved.txt"
    assert result.step("Read")["outputs"] == {"content": "hello\nmore\n"}
    assert result.step("ReadWide")["outputs"] == {"content": "wide"}
    assert result.step("ReadChained")["inputs"] == {"path": f"{t}/a/utf16.txt"}
    assert (t / "a/utf16.txt").read_bytes() == b"wide"
    assert result.step("List")["outputs"]["files"] == sorted(
        [
            f"{t}/a/hello.txt",
            f"{t}/a/utf16.txt",
            f"{t}/a3/hello.txt",
            f"{t}/a3/utf16.txt",
            f"{t}/moved.txt",
        ]
    )
    assert result.step("ListTop")["outputs"]["files"] == [f"{t}/link", f"{t}/moved.txt"]
    assert stat.S_IMODE((t / "moved.txt").stat().st_mode) == 0o600
    assert (t / "moved.txt").stat().st_uid == 65534
    uid, gid = os.getuid(), os.getgid()
    assert result.step("Stat")["outputs"]["stdout"] == f"65534:0 700\n{uid}:{gid} 700"
    assert not (t / "a3").exists()


def test_file_action_failures_name_the_path(agent: Agent, tmp_path: Path):
    existing = tmp_path / "exists.txt"
    existing.write_text("keep")
    folder = tmp_path / "full"
    folder.mkdir()
    (folder / "f").write_text("x")
    doc = simple(
        step(
            "NoOverwrite",
            "CreateFile",
            [{"path": str(existing), "content": "new", "overwrite": False}],
            onFailure="Ignore",
        ),
        step(
            "CopyMissing",
            "CopyFile",
            [{"source": f"{tmp_path}/missing", "destination": f"{tmp_path}/x"}],
            onFailure="Ignore",
        ),
        step("NotEmpty", "DeleteFolder", [{"path": str(folder)}], onFailure="Ignore"),
        step("DeleteMissing", "DeleteFile", [{"path": f"{tmp_path}/nope"}], onFailure="Ignore"),
        step(
            "BadOwner",
            "SetFileOwner",
            [{"path": str(existing), "owner": "no-such-user-x"}],
            onFailure="Ignore",
        ),
        step(
            "AppendMissing",
            "AppendFile",
            [{"path": f"{tmp_path}/nope", "content": "x"}],
            onFailure="Ignore",
        ),
    )
    result = agent.run(doc)
    assert result.code == 0
    assert existing.read_text() == "keep"
    names = [key.split(".", 1)[1] for key in result.statuses()]
    messages = {name: result.step(name)["failureMessage"] for name in names}
    assert (
        str(existing) in messages["NoOverwrite"] and "overwrite is false" in messages["NoOverwrite"]
    )
    assert f"{tmp_path}/missing" in messages["CopyMissing"]
    assert "force: true" in messages["NotEmpty"] and folder.exists()
    assert f"{tmp_path}/nope" in messages["DeleteMissing"]
    assert "no-such-user-x" in messages["BadOwner"]
    assert f"{tmp_path}/nope" in messages["AppendMissing"]
    assert all(s == "IgnoredFailure" for s in result.statuses().values())


def test_no_partial_file_is_left_behind(agent: Agent, tmp_path: Path):
    doc = simple(
        step(
            "Bad",
            "CreateFile",
            [{"path": f"{tmp_path}/x.txt", "content": "é", "encoding": "ascii"}],
        )
    )
    result = agent.run(doc)
    assert result.code == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".x", "x"))) == []
