"""Helpers for the integration tests that run whole builds: recipes, leftovers, manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from vmbuild.vm.machine import leftover_domains

DATA = Path(__file__).parent / "data"


def write_recipe(folder: Path, name: str, parent: Path, components: list[dict[str, Any]],
                 **extra: Any) -> Path:  # fmt: skip
    """A recipe in `folder` built on `parent` (a base image path) under TCG."""
    folder.mkdir(parents=True, exist_ok=True)
    recipe = {
        "name": name,
        "version": "1.0.0",
        "parent": {"path": str(parent)},
        "components": components,
        "vm": {"cpus": 2, "memory": "1G", "accelerator": "tcg"},
        "workdir": str(folder / "work"),
        **extra,
    }
    path = folder / "recipe.yml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def manifest(build_dir: Path) -> dict[str, Any]:
    return json.loads((build_dir / "manifest.json").read_text())


def only_build_dir(workdir: Path) -> Path:
    dirs = [p for p in workdir.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def build_id(build_dir: Path) -> str:
    """The build id at the end of a build folder's name (`<name>-<version>-<id>`)."""
    return "-".join(build_dir.name.split("-")[-3:])


def domains_of(build_dir: Path) -> list[str]:
    """libvirt domains of that build still present (other builds may run beside it)."""
    return [d for d in leftover_domains() if build_id(build_dir) in d]


def assert_nothing_left(build_dir: Path) -> None:
    """No VM, overlay, seed, temporary or half-written image of this build remains."""
    assert domains_of(build_dir) == []
    assert not (build_dir / ".tmp").exists()
    assert not (build_dir / "image.qcow2").exists()
    assert list(build_dir.glob(".*.part")) == []
    assert list(build_dir.rglob("*.qcow2")) == []
    assert list(build_dir.rglob("seed.iso")) == []


def agent_steps(log_dir: Path) -> dict[str, dict[str, Any]]:
    """Steps by name from every detailedoutput.json under an agent log folder."""
    steps = {}
    for detailed in log_dir.rglob("detailedoutput.json"):
        data = json.loads(detailed.read_text())
        for doc in data["documents"]:
            for phase in doc["phases"]:
                for step in phase["steps"]:
                    steps[step["name"]] = step
    return steps
