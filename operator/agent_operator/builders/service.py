"""Service X: the gateway's inbound port only.

The admin port (health, metrics) stays off the Service: callers of the agent
have no business there. Prometheus scrapes it from the pods (see the
pod template's prometheus.io annotations).
"""

from __future__ import annotations

from typing import Any

from agent_operator.api import AgentDeployment
from agent_operator.builders.labels import metadata, selector
from agent_operator.sidecar import INBOUND_PORT


def service(agd: AgentDeployment) -> dict[str, Any]:
    """ClusterIP Service: callers reach the agent only through the gateway."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(agd, agd.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(agd),
            "ports": [
                {
                    "name": "http",
                    "port": INBOUND_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
            ],
        },
    }
