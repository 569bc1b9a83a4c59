"""Assert: the step fails unless its condition (comparison and logical operators) is true."""

from __future__ import annotations

from typing import Any

from vmbuild_agent.actions import Action, register
from vmbuild_agent.errors import StepFailed
from vmbuild_agent.expressions import check_condition, describe, evaluate


@register
class Assert(Action):
    name = "Assert"
    shape = "any"

    def check(self, inputs: Any) -> list[str]:
        return [f"Assert inputs: {p}" for p in check_condition(inputs)]

    def run(self, inputs: Any, ctx: Any) -> dict:
        if not evaluate(inputs):
            raise StepFailed(f"assertion failed: {describe(inputs)}")
        return {}
