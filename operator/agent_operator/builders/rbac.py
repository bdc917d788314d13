"""ServiceAccount, Role and RoleBinding X-gateway: the gateway's own identity.

Least privilege: the gateway may keep its spend records (SpendRecords, see
`agent_operator.ledger`) and read its AgentDeployment, nothing else. The pod
runs as this ServiceAccount, but only the gateway container gets its token
(builders/deployment.py); the agent container holds no API credential.
"""

from __future__ import annotations

from typing import Any, Final

from agent_operator.api import GROUP, PLURAL, AgentDeployment
from agent_operator.builders.labels import metadata
from agent_operator.ledger import RECORD_PLURAL, gateway_identity

RBAC_API_GROUP: Final = "rbac.authorization.k8s.io"
RBAC_API_VERSION: Final = f"{RBAC_API_GROUP}/v1"


def gateway_service_account(agd: AgentDeployment) -> dict[str, Any]:
    """ServiceAccount X-gateway; no token is mounted unless a pod asks for one explicitly."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(agd, gateway_identity(agd.name)),
        # The pod mounts a projected token in the gateway container only.
        "automountServiceAccountToken": False,
    }


def gateway_role(agd: AgentDeployment) -> dict[str, Any]:
    """Role X-gateway: exactly the ledger's operations, nothing more.

    RBAC cannot narrow `create` by resourceNames (a create is authorized
    before the object has a name; record names are per pod anyway), so the Role
    lets the gateway write any SpendRecord of its namespace; the admission policy of
    crds/spendrecords.agents.dev.yaml (`crd.spend_record_policy`) narrows
    writes to this agent's own pod's records and refuses deletes. No secrets,
    no patch, no delete.
    """
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": "Role",
        "metadata": metadata(agd, gateway_identity(agd.name)),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": [RECORD_PLURAL],
                "verbs": ["get", "list", "watch", "create", "update"],
            },
            # Its AgentDeployment's uid: the owner of the records the gateway writes.
            {
                "apiGroups": [GROUP],
                "resources": [PLURAL],
                "verbs": ["get"],
                "resourceNames": [agd.name],
            },
        ],
    }


def gateway_role_binding(agd: AgentDeployment) -> dict[str, Any]:
    """RoleBinding X-gateway: Role X-gateway to ServiceAccount X-gateway, same namespace."""
    name = gateway_identity(agd.name)
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": "RoleBinding",
        "metadata": metadata(agd, name),
        # roleRef is immutable; it never changes for a given name.
        "roleRef": {"apiGroup": RBAC_API_GROUP, "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": agd.namespace}],
    }
