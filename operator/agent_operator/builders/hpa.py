"""HorizontalPodAutoscaler X (autoscaling/v2), only when spec.autoscaling is set."""

from __future__ import annotations

from typing import Any

from agent_operator.api import AgentDeployment
from agent_operator.builders.labels import metadata
from agent_operator.sidecar import INFLIGHT_METRIC


def horizontal_pod_autoscaler(agd: AgentDeployment) -> dict[str, Any] | None:
    """The HPA that owns the Deployment's replicas, or None without autoscaling."""
    scaling = agd.spec.autoscaling
    if scaling is None:
        return None
    metrics: list[dict[str, Any]] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu},
            },
        }
    ]
    if scaling.target_inflight is not None:
        # Served by a custom-metrics adapter scraping the gateway's admin port.
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": INFLIGHT_METRIC},
                    "target": {
                        "type": "AverageValue",
                        "averageValue": str(scaling.target_inflight),
                    },
                },
            }
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(agd, agd.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": agd.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": metrics,
        },
    }
