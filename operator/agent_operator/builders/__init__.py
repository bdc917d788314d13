"""Desired state of an AgentDeployment's children: pure functions, plain dicts.

No client, no clock, no randomness: the reconciler, `agent-operator render`
and the golden tests call the same functions and get the same bytes.
"""

from __future__ import annotations

from typing import Any

from agent_operator.api import AgentDeployment
from agent_operator.builders.configmap import budget_configmap, budget_file
from agent_operator.builders.deployment import deployment, gateway_args, gateway_command
from agent_operator.builders.hpa import horizontal_pod_autoscaler
from agent_operator.builders.labels import labels, owner_reference, selector
from agent_operator.builders.options import BuildOptions
from agent_operator.builders.rbac import (
    gateway_role,
    gateway_role_binding,
    gateway_service_account,
)
from agent_operator.builders.secret import client_keys_secret, credentials_secret
from agent_operator.builders.service import service

__all__ = [
    "BuildOptions",
    "budget_configmap",
    "budget_file",
    "client_keys_secret",
    "credentials_secret",
    "deployment",
    "desired_children",
    "gateway_args",
    "gateway_command",
    "gateway_role",
    "gateway_role_binding",
    "gateway_service_account",
    "horizontal_pod_autoscaler",
    "labels",
    "owner_reference",
    "selector",
    "service",
]


def desired_children(
    agd: AgentDeployment, options: BuildOptions | None = None
) -> list[dict[str, Any]]:
    """Every child, in apply order: what the pod mounts or runs as exists before the Deployment.

    ConfigMap X-budget, Secret X-credentials, Secret X-client-keys (only with
    clientAuth.enabled), ServiceAccount, Role and RoleBinding X-gateway,
    Deployment X, Service X, HPA X (only with autoscaling). The gateway's
    identity exists whatever the spend store: one pod shape.
    """
    options = options or BuildOptions()
    children = [budget_configmap(agd), credentials_secret(agd)]
    if agd.spec.client_auth.enabled:
        children.append(client_keys_secret(agd))
    # The ServiceAccount before the pods that run as it (pods naming a missing
    # one are refused); its Role and binding before the gateway needs them.
    children += [gateway_service_account(agd), gateway_role(agd), gateway_role_binding(agd)]
    children += [deployment(agd, options), service(agd)]
    hpa = horizontal_pod_autoscaler(agd)
    if hpa is not None:
        children.append(hpa)
    return children
