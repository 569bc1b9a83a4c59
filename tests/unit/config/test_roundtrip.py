"""The JSON round-trip (`to_dict`/`from_dict`) the manifest relies on, over every field."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from vmbuild.config import Recipe, load_recipe
from vmbuild.config.model import Model

BASE_DEFINITION = Path(__file__).parents[3] / "images" / "base" / "debian-12.yml"

EVERY_FIELD = """\
name: web-server
version: 2.1.0-rc.1+build.5
description: every field set to something other than its default
parent:
  build: ./builds/web-1.0.0
components:
  - path: hello.yml
    parameters: {greeting: hi, port: 8080}
vm:
  cpus: 3
  memory: 3G
  disk_size: 12G
  firmware: uefi
  machine: q35
  accelerator: tcg
  uri: qemu:///session
  network: {mode: libvirt, name: isolated}
workdir: ./out
user_data:
  packages: [curl]
  write_files: [{path: /etc/motd, content: hi}]
timeouts: {boot: 1m, ssh: 2m, cloud_init: 3m, shutdown: 4m, build: 5m}
sanitize:
  ssh_host_keys: false
  authorized_keys: false
  build_user: false
  cloud_init: false
  machine_id: false
  logs: false
  shell_history: false
  tmp: false
  dhcp_leases: false
  extra_paths: [/var/cache/apt]
snapshot: {compression: zlib}
test: {enabled: false, timeout: 15m}
warm: false
output: {formats: [raw]}
distribute:
  - {type: directory, name: shelf, path: /srv/images}
"""


def _non_default_fields(model: Model, prefix: str = "") -> list[str]:
    """Names of fields still at their default (the fixture should set every one)."""
    left = []
    for f in dataclasses.fields(model):  # type: ignore[arg-type]
        if f.metadata.get("internal"):
            continue
        value = getattr(model, f.name)
        if isinstance(value, Model):
            left += _non_default_fields(value, f"{prefix}{f.name}.")
            continue
        default: Any = (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        )
        if value == default:
            left.append(prefix + f.name)
    return left


def test_every_field_round_trips_through_json(write_recipe, recipe_dir: Path):
    (recipe_dir / "builds" / "web-1.0.0").mkdir(parents=True)
    (recipe_dir / "builds" / "web-1.0.0" / "manifest.json").write_text("{}")
    recipe = load_recipe(write_recipe(EVERY_FIELD), check_components=False)
    # Fields the parent kind leaves unset (path, url, sha256, bootstrap) are covered below.
    assert _non_default_fields(recipe) == [
        "parent.path",
        "parent.url",
        "parent.sha256",
        "parent.bootstrap",
    ]
    data = json.loads(json.dumps(recipe.to_dict()))
    again = Recipe.from_dict(data)
    assert again == recipe
    assert again.to_dict() == data
    assert again.vm.memory == 3072
    assert again.parent.build == recipe_dir / "builds" / "web-1.0.0"


def test_parent_kinds_round_trip(write_recipe, recipe_dir: Path):
    shutil.copy(BASE_DEFINITION, recipe_dir / "base.yml")
    digest = "A" * 64
    for parent, kind in [
        ("path: base.qcow2", "path"),
        (f"url: https://127.0.0.1/x.qcow2\n  sha256: sha256:{digest}", "url"),
        ("bootstrap: base.yml", "bootstrap"),
    ]:
        text = f"name: x\nversion: 0.0.1\nparent:\n  {parent}\n"
        recipe = load_recipe(write_recipe(text), check_components=False)
        assert recipe.parent.kind == kind
        if kind == "url":
            assert recipe.parent.sha256 == "a" * 64  # prefix dropped, lowercase
        assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_defaults_from_minimal_dict():
    recipe = Recipe.from_dict({"name": "x", "version": "1.0.0", "parent": {"path": "/a.qcow2"}})
    assert recipe.vm.memory == 2048
    assert recipe.sanitize.logs is True
    assert recipe.snapshot.compression == "zstd"
    assert recipe.test.timeout == 1800
    assert recipe.warm is True
