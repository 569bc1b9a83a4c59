"""The action table the agent imports from lazily matches what the modules register."""

from __future__ import annotations

import subprocess
import sys

from vmbuild_agent import actions

from tests.unit.agent.helpers import AGENT_DIR


def test_every_registered_action_is_in_the_family_table() -> None:
    registry = actions.load_all()
    assert set(registry) == set(actions.FAMILY_OF)
    for name, cls in registry.items():
        assert cls.__module__ == f"vmbuild_agent.actions.{actions.FAMILY_OF[name]}", name


def test_get_imports_only_the_family_it_needs() -> None:
    """In a fresh interpreter: looking up ExecuteBash loads `execute` and nothing else."""
    code = (
        "import sys; from vmbuild_agent import actions; "
        "assert actions.get('ExecuteBash').name == 'ExecuteBash'; "
        "assert actions.get('NoSuchAction') is None; "
        "print(sorted(m for m in sys.modules if m.startswith('vmbuild_agent.actions.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=AGENT_DIR, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out.strip() == "['vmbuild_agent.actions.execute']"
