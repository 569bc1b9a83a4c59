"""Checking a recipe's component documents with the agent, before anything boots."""

from __future__ import annotations

from collections.abc import Iterable

from vmbuild.components.agent import validate
from vmbuild.config.problems import Problem, RecipeError
from vmbuild.config.recipe import Component


def component_problems(components: Iterable[Component]) -> list[Problem]:
    """Every problem the agent finds, each prefixed by where the recipe lists the component."""
    problems: list[Problem] = []
    for component in components:
        origin = component.origin
        file, line, field = (origin.file, origin.line, origin.field) if origin else ("", None, "")
        report = validate(component.path, component.parameters)
        if report.get("valid"):
            continue
        for found in report.get("problems") or [{"message": "invalid (no details)"}]:
            problems.append(Problem(file, line, field, _describe(component, found)))
    return problems


def _describe(component: Component, found: dict) -> str:
    """`hello.yml:7: build/Greet: message` from the agent's problem fields."""
    document = found.get("document") or str(component.path)
    where = f"{document}:{found['line']}" if found.get("line") else document
    step = "/".join(str(found[k]) for k in ("phase", "step") if found.get(k))
    return f"{where}: {step + ': ' if step else ''}{found.get('message', 'invalid')}"


def check(components: Iterable[Component]) -> None:
    """Raise `RecipeError` (exit 2) listing every problem in the component documents."""
    components = list(components)
    problems = component_problems(components)
    if problems:
        origin = next((c.origin for c in components if c.origin), None)
        raise RecipeError(origin.file if origin else "components", problems)
