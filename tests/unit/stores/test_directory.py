"""Directory store: sparse atomic copy, verification, skip on re-run, list and delete."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmbuild import stores
from vmbuild.distribute import load_build
from vmbuild.errors import InputError


def test_publish_verify_skip_list_delete(tmp_path: Path, sample_build: Path):
    build = load_build(sample_build)
    store = stores.load(
        {"name": "local", "type": "directory", "path": str(tmp_path / "d"), "prefix": "{name}/"},
        "distribute[0]",
    )
    first = store.publish(build.files, build.image)
    assert first["verified"] and not first["skipped"]
    raw = tmp_path / "d" / "demo" / "demo-1.2.3.raw"
    assert raw.read_bytes() == (sample_build / "outputs" / "demo-1.2.3.raw").read_bytes()
    # The raw output is mostly holes; the copy keeps them.
    assert os.stat(raw).st_blocks * 512 < raw.stat().st_size // 4
    again = store.publish(build.files, build.image)
    assert again["skipped"] and all(o["skipped"] for o in again["objects"])
    names = {r.name for r in store.list()}
    assert names == {f"demo/{f.name}" for f in build.files}
    store.delete("demo/demo-1.2.3.raw")
    assert not raw.exists()


def test_changed_object_is_replaced(tmp_path: Path, sample_build: Path):
    build = load_build(sample_build)
    store = stores.load({"name": "l", "type": "directory", "path": str(tmp_path)}, "d[0]")
    target = tmp_path / build.files[0].name
    target.write_bytes(b"x" * build.files[0].size)  # same size, other content
    result = store.publish(build.files[:1], build.image)
    assert not result["skipped"]
    assert target.read_bytes() == build.files[0].path.read_bytes()


def test_unwritable_target_names_the_field(tmp_path: Path, sample_build: Path):
    build = load_build(sample_build)
    (tmp_path / "file").write_text("not a folder")
    store = stores.load(
        {"name": "bad", "type": "directory", "path": str(tmp_path / "file")}, "d[3]"
    )
    with pytest.raises(InputError, match=r"d\[3\] \(name: bad\): path: .* is not a directory"):
        store.check()
    assert build.files
