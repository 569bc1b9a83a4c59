"""Staging component documents for the guest: copies, checksums, parameters.json, atomicity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vmbuild.components import Bundle, stage
from vmbuild.config import Component
from vmbuild.errors import BuildError


@pytest.fixture
def documents(tmp_path: Path) -> list[Component]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = tmp_path / "a" / "setup.yml"
    second = tmp_path / "b" / "setup.yml"  # same file name: the bundle must keep both
    first.write_text("name: one\n")
    second.write_text("name: two\n")
    return [Component(first, {"greeting": "hi", "n": "1"}), Component(second, {})]


def test_stage_copies_in_order_with_checksums(tmp_path: Path, documents):
    bundle = stage(documents, tmp_path / "out" / "components")
    assert isinstance(bundle, Bundle)
    files = [d.file for d in bundle.documents]
    assert files == ["documents/01/setup.yml", "documents/02/setup.yml"]
    for doc, component in zip(bundle.documents, documents, strict=True):
        staged = bundle.root / doc.file
        assert staged.read_bytes() == component.path.read_bytes()
        assert doc.sha256 == hashlib.sha256(component.path.read_bytes()).hexdigest()
    params = json.loads((bundle.root / "parameters.json").read_text())
    assert params == {"documents": bundle.manifest()}
    assert params["documents"][0]["parameters"] == {"greeting": "hi", "n": "1"}
    assert params["documents"][1]["source"] == str(documents[1].path)


def test_existing_destination_refused(tmp_path: Path, documents):
    dest = tmp_path / "components"
    dest.mkdir()
    with pytest.raises(BuildError, match="already exists"):
        stage(documents, dest)


def test_failure_leaves_nothing_behind(tmp_path: Path, documents):
    missing = Component(tmp_path / "nope.yml", {})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError, match="nope.yml"):
        stage([*documents, missing], out / "components")
    assert list(out.iterdir()) == []


def test_nested_documents_keep_their_relative_layout(tmp_path: Path):
    (tmp_path / "common").mkdir()
    (tmp_path / "web").mkdir()
    (tmp_path / "common" / "base.yml").write_text("name: base\n")
    (tmp_path / "web" / "extra.yml").write_text("name: extra\n")
    top = tmp_path / "web" / "site.yml"
    top.write_text(
        """\
name: site
phases:
  - name: build
    steps:
      - {name: Base, action: ExecuteDocument, inputs: {document: ../common/base.yml}}
      - {name: Extra, action: ExecuteDocument, inputs: {document: extra.yml}}
      - {name: Guest, action: ExecuteDocument, inputs: {document: /opt/x.yml}}
      - {name: Var, action: ExecuteDocument, inputs: {document: "{{ which }}.yml"}}
"""
    )
    bundle = stage([Component(top, {})], tmp_path / "out")
    (doc,) = bundle.documents
    assert doc.file == "documents/01/web/site.yml"
    assert sorted(doc.files) == [
        "documents/01/common/base.yml",
        "documents/01/web/extra.yml",
        "documents/01/web/site.yml",
    ]
    staged_top = bundle.root / doc.file
    assert (staged_top.parent / "../common/base.yml").resolve().read_text() == "name: base\n"
    assert doc.files["documents/01/web/extra.yml"] == hashlib.sha256(b"name: extra\n").hexdigest()


def test_staged_documents_know_their_name_and_phases(tmp_path: Path):
    """Read once when staging: the agent reports failed steps under the name."""
    doc = tmp_path / "both.yml"
    doc.write_text(
        "name: tester\nschemaVersion: 1.0\nphases:\n"
        "  - name: build\n    steps: []\n  - name: test\n    steps: []\n"
    )
    broken = tmp_path / "broken.yml"
    broken.write_text("name: [unclosed\n")
    bundle = stage([Component(doc, {}), Component(broken, {})], tmp_path / "b")
    assert (bundle.documents[0].name, bundle.documents[0].phases) == (
        "tester",
        frozenset({"build", "test"}),
    )
    assert bundle.documents[1].phases == {"build", "validate", "test"}, "left to the agent"
