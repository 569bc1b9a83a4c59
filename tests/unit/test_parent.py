"""Parent image resolution: local paths, cached URL downloads with checksums, build folders."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import time
from pathlib import Path

import pytest

from vmbuild import parent
from vmbuild.errors import BuildError, InputError


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder; yields (folder, base_url, hits)."""
    root = tmp_path / "www"
    root.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            hits.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "cache"))


def test_url_download_is_verified_and_cached(http_root, tmp_path):
    root, base, hits = http_root
    payload = b"not really a disk image" * 1000
    (root / "img.qcow2").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    first = parent.resolve(url=f"{base}/img.qcow2", sha256=digest)
    assert first.path.read_bytes() == payload
    assert first.sha256 == digest
    second = parent.resolve(url=f"{base}/img.qcow2", sha256=digest.upper())
    assert second.path == first.path
    assert len([h for h in hits if "img.qcow2" in h]) == 1  # served from the cache


def test_checksum_mismatch_leaves_nothing_in_cache(http_root, tmp_path):
    root, base, _ = http_root
    (root / "img.qcow2").write_bytes(b"payload")
    with pytest.raises(BuildError, match="checksum mismatch"):
        parent.resolve(url=f"{base}/img.qcow2", sha256="0" * 64)
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []


def test_unreachable_url_is_a_build_error(http_root):
    _, base, _ = http_root
    with pytest.raises(BuildError, match="cannot download"):
        parent.resolve(url=f"{base}/missing.qcow2", sha256="a" * 64)


def test_bad_checksum_and_missing_path_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="parent.sha256"):
        parent.resolve(url="http://127.0.0.1:9/x", sha256="xyz")
    with pytest.raises(InputError, match="parent.path"):
        parent.resolve(path=tmp_path / "nope.qcow2")


def test_build_folder_parent(tmp_path: Path):
    build = tmp_path / "b"
    build.mkdir()
    with pytest.raises(InputError, match="no manifest.json"):
        parent.resolve(build=build)
    (build / "manifest.json").write_text(json.dumps({"status": "failed"}))
    with pytest.raises(InputError, match="did not succeed"):
        parent.resolve(build=build)
    (build / "manifest.json").write_text(
        json.dumps({"status": "success", "image": {"path": "image.qcow2"}})
    )
    (build / "image.qcow2").write_bytes(b"x")
    resolved = parent.resolve(build=build)
    assert resolved.path == (build / "image.qcow2").resolve()
    assert resolved.sha256 == hashlib.sha256(b"x").hexdigest()


def test_path_digest_is_remembered_until_the_file_changes(tmp_path: Path, monkeypatch):
    image = tmp_path / "disk.qcow2"
    image.write_bytes(b"one" * 1000)
    assert parent.resolve(path=image).sha256, "a file written just now..."
    assert not list((tmp_path / "cache" / "digests").glob("*.json")), "...is not remembered"
    os.utime(image, (time.time() - 60, time.time() - 60))
    first = parent.resolve(path=image).sha256
    assert first == hashlib.sha256(b"one" * 1000).hexdigest()

    hashed: list[Path] = []
    real = parent.sha256_file
    monkeypatch.setattr(parent, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert parent.resolve(path=image).sha256 == first
    assert hashed == [], "an unchanged file is not read again"

    image.write_bytes(b"two" * 1000)  # same size, new content and mtime
    assert parent.resolve(path=image).sha256 == hashlib.sha256(b"two" * 1000).hexdigest()
    assert hashed == [image]
