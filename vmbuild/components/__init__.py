"""Component documents on the host: checking them with the agent, staging them for the guest."""

from vmbuild.components.agent import agent_path
from vmbuild.components.bundle import Bundle, StagedDocument, stage
from vmbuild.components.check import check, component_problems

__all__ = ["Bundle", "StagedDocument", "agent_path", "check", "component_problems", "stage"]
