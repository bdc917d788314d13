"""Secrets X-credentials and X-client-keys: metadata only.

The operator fills the key material (the keys of `sidecar.SECRET_FILES`:
`current`, `previous`, `previous-expires-at`); a builder never invents a
secret.
"""

from __future__ import annotations

from typing import Any

from agent_operator.api import AgentDeployment
from agent_operator.builders.labels import client_keys_name, credentials_name, metadata


def _secret(agd: AgentDeployment, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(agd, name),
        "type": "Opaque",
    }


def credentials_secret(agd: AgentDeployment) -> dict[str, Any]:
    """Secret X-credentials: the upstream LLM keys, mounted by the gateway only."""
    return _secret(agd, credentials_name(agd))


def client_keys_secret(agd: AgentDeployment) -> dict[str, Any]:
    """Secret X-client-keys: the keys callers present (clientAuth.enabled)."""
    return _secret(agd, client_keys_name(agd))
