"""Component documents checked by the real guest agent (`dist/vmbuild-agent.pyz`) on the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmbuild.cli import main
from vmbuild.components import agent_path, check, component_problems
from vmbuild.config import Component, Origin, RecipeError, load_recipe

GOOD = """\
name: hello
schemaVersion: 1.0
parameters:
  - greeting:
      type: string
phases:
  - name: build
    steps:
      - name: Greet
        action: ExecuteBash
        inputs:
          commands:
            - echo "{{ greeting }}"
"""

BAD = """\
name: broken
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Greet
        action: ExecuteBassh
        inputs:
          commands: [echo hi]
"""


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    (tmp_path / "hello.yml").write_text(GOOD)
    (tmp_path / "broken.yml").write_text(BAD)
    return tmp_path


def _component(path: Path, params: dict[str, str], line: int = 7) -> Component:
    return Component(path, params, origin=Origin("recipe.yml", line, "components[0]"))


def test_agent_is_rebuilt_when_stale():
    pyz = agent_path()
    os.utime(pyz, (0, 0))  # older than every source file
    assert agent_path() == pyz
    assert pyz.stat().st_mtime > 0


def test_valid_document_with_parameters(docs: Path):
    # Commas and '=' in a value travel intact (parameters go to the agent as a JSON file).
    component = _component(docs / "hello.yml", {"greeting": "a=1, b=2"})
    assert component_problems([component]) == []
    check([component])


def test_problems_are_prefixed_with_the_recipe_location(docs: Path):
    with pytest.raises(RecipeError) as info:
        check([_component(docs / "broken.yml", {})])
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.field) == ("recipe.yml", 7, "components[0]")
    assert problem.message == (
        f"{docs / 'broken.yml'}:6: build/Greet: unknown action 'ExecuteBassh'"
    )
    assert str(info.value).splitlines()[1].startswith("  recipe.yml:7: components[0]: ")


def test_missing_and_undeclared_parameters(docs: Path):
    problems = component_problems([_component(docs / "hello.yml", {"greting": "hi"})])
    messages = sorted(p.message for p in problems)
    assert any("missing required parameter 'greeting'" in m for m in messages), messages
    assert any("'greting' is not declared" in m for m in messages), messages


def _recipe(docs: Path, parent_image: Path, components: str) -> Path:
    (docs / "base.qcow2").symlink_to(parent_image)
    recipe = docs / "recipe.yml"
    recipe.write_text(
        "name: demo\nversion: 1.0.0\nparent: {path: base.qcow2}\n"
        f"components:\n{components}vm: {{memory: 64}}\n"
    )
    return recipe


@pytest.fixture(scope="module")
def parent_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vmbuild import disk

    return disk.create(tmp_path_factory.mktemp("parent") / "base.qcow2", "64M")


def test_load_recipe_reports_component_and_recipe_problems_together(docs, parent_image):
    components = (
        "  - path: hello.yml\n    parameters: {greeting: hi}\n"  # lines 5-6: fine
        "  - path: broken.yml\n"  # line 7
    )
    recipe = _recipe(docs, parent_image, components)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    found = [(p.line, p.field) for p in info.value.problems]
    assert found == [(7, "components[1]"), (8, "vm.memory")]
    assert "unknown action 'ExecuteBassh'" in info.value.problems[0].message


def test_validate_verb_checks_components(docs, parent_image, capsys):
    recipe = _recipe(docs, parent_image, "  - path: broken.yml\n")
    assert main(["validate", str(recipe)]) == 2
    out = capsys.readouterr().out
    assert f"{recipe}:5: components[0]: " in out
    assert "ExecuteBassh" in out
    # The same recipe passes with component checks off, once the recipe problem is fixed.
    recipe.write_text(recipe.read_text().replace("memory: 64", "memory: 512"))
    assert main(["validate", "--no-components", str(recipe)]) == 0
