"""The `agent` fixture (see helpers.py)."""

from tests.unit.agent.helpers import agent  # noqa: F401
