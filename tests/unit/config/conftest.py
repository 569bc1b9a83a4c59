"""A folder with what a small recipe refers to: a real 64 MiB qcow2 parent and a component."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from vmbuild import disk

COMPONENT = """\
name: hello
schemaVersion: 1.0
parameters:
  - greeting:
      type: string
      default: hello
phases:
  - name: build
    steps:
      - name: Greet
        action: ExecuteBash
        inputs:
          commands:
            - echo "{{ greeting }}"
"""

GOOD = """\
name: demo
version: 1.0.0
parent:
  path: base.qcow2
components:
  - path: hello.yml
    parameters: {greeting: hi}
vm:
  cpus: 2
  memory: 2G
"""


@pytest.fixture(scope="session")
def parent_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return disk.create(tmp_path_factory.mktemp("parent") / "base.qcow2", "64M")


@pytest.fixture
def recipe_dir(tmp_path: Path, parent_image: Path) -> Path:
    (tmp_path / "base.qcow2").symlink_to(parent_image)
    (tmp_path / "hello.yml").write_text(COMPONENT)
    return tmp_path


@pytest.fixture
def write_recipe(recipe_dir: Path) -> Callable[[str], Path]:
    """Write recipe text (dedented) as recipe.yml in `recipe_dir`; returns its path."""

    def write(text: str, name: str = "recipe.yml") -> Path:
        path = recipe_dir / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
