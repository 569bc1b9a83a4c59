"""The example components under images/components/ validate, and hello-world runs."""

from __future__ import annotations

from pathlib import Path

from tests.unit.agent.helpers import Agent

COMPONENTS = Path(__file__).resolve().parents[3] / "images" / "components"


def test_every_example_component_validates(agent: Agent):
    examples = sorted(COMPONENTS.glob("*.yml"))
    assert examples, "no example components"
    code, report = agent.validate(*examples)
    assert (code, report["problems"]) == (0, [])


def test_hello_world_runs_all_phases(agent: Agent, tmp_path: Path):
    target = tmp_path / "hello"
    result = agent.run(
        COMPONENTS / "hello-world.yml", "--parameters", f"greeting=hi there,target={target}"
    )
    assert result.code == 0, result.stderr
    assert (target / "hello.txt").read_text() == "hi there"
    assert [p["name"] for p in result.summary["documents"][0]["phases"]] == [
        "build",
        "validate",
        "test",
    ]
