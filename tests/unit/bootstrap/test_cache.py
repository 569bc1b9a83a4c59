"""The cache key follows the definition's content, the mirror and the bootstrap version."""

from pathlib import Path

from vmbuild.bootstrap import cache
from vmbuild.bootstrap.definition import load_definition

BASE = """\
distribution: debian
release: bookworm
packages: [cloud-init, openssh-server]
"""


def _definition(tmp_path: Path, text: str, name: str = "d.yml"):
    path = tmp_path / name
    path.write_text(text)
    return load_definition(path)


def test_key_ignores_layout_but_not_content(tmp_path):
    a = _definition(tmp_path, BASE, "a.yml")
    reordered = "packages:\n  - cloud-init\n  - openssh-server\nrelease: bookworm  # same\n"
    b = _definition(tmp_path, "distribution: debian\n" + reordered, "b.yml")
    c = _definition(tmp_path, BASE.replace("openssh-server", "dropbear"), "c.yml")
    mirror = "http://mirror.test/debian"
    assert cache.image_key(a, mirror) == cache.image_key(b, mirror)
    assert cache.image_key(a, mirror) != cache.image_key(c, mirror)
    assert cache.image_key(a, mirror) != cache.image_key(a, "http://other.test/debian")


def test_key_changes_with_bootstrap_version(tmp_path, monkeypatch):
    d = _definition(tmp_path, BASE)
    before = cache.image_key(d, "http://m.test/d")
    monkeypatch.setattr(cache, "BOOTSTRAP_VERSION", cache.BOOTSTRAP_VERSION + 1)
    assert cache.image_key(d, "http://m.test/d") != before


def test_ensure_image_reuses_a_cached_image(tmp_path, monkeypatch):
    """A cached image with meta.json is returned without building (build_image never runs)."""
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "d.yml"
    path.write_text(BASE)
    definition = load_definition(path)
    folder = cache.image_folder(definition, "http://m.test/d")
    folder.mkdir(parents=True)
    (folder / cache.IMAGE_NAME).write_bytes(b"qcow2")
    (folder / cache.META_NAME).write_text('{"sha256": "x"}')

    def no_build(*args, **kwargs):
        raise AssertionError("must not build")

    monkeypatch.setattr(cache, "build_image", no_build)
    assert cache.ensure_image(path, mirror="http://m.test/d") == folder / cache.IMAGE_NAME
    assert cache.read_meta(folder / cache.IMAGE_NAME) == {"sha256": "x"}
