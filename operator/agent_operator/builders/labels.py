"""Labels, selectors and owner references shared by every child."""

from __future__ import annotations

from typing import Any

from agent_operator.api import API_VERSION, KIND, AgentDeployment

MANAGED_BY = "agent-operator"
AGENT_LABEL = "agents.dev/agent"


def labels(agd: AgentDeployment) -> dict[str, str]:
    """The labels every child carries (product spec, section 2)."""
    return {
        "app.kubernetes.io/name": agd.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        AGENT_LABEL: agd.name,
    }


def selector(agd: AgentDeployment) -> dict[str, str]:
    """Pod selector of the Deployment and the Service (immutable: keep it minimal)."""
    return {AGENT_LABEL: agd.name}


def owner_reference(agd: AgentDeployment) -> dict[str, Any]:
    """Makes the AgentDeployment the controller of a child, for garbage collection."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": agd.name,
        "uid": agd.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(agd: AgentDeployment, name: str) -> dict[str, Any]:
    """metadata of a child called `name`, in the AgentDeployment's namespace."""
    return {
        "name": name,
        "namespace": agd.namespace,
        "labels": labels(agd),
        "ownerReferences": [owner_reference(agd)],
    }


def budget_name(agd: AgentDeployment) -> str:
    return f"{agd.name}-budget"


def credentials_name(agd: AgentDeployment) -> str:
    return f"{agd.name}-credentials"


def client_keys_name(agd: AgentDeployment) -> str:
    return f"{agd.name}-client-keys"
