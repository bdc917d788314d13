"""The baseline of bench/operator_scale.py: an AgentDeployment operator written the
straightforward way a kopf user writes one (kopf's own examples' style).

One `@kopf.on.create` handler, the official sync `kubernetes` client, three children
adopted with `kopf.adopt` (owner references): a Deployment running the spec's image,
a Service and a ConfigMap. kopf's default settings, nothing tuned.

What it deliberately does not do, so the benchmark shows what the real operator's
extra work costs: no update handler (a spec change is never applied, a deleted or
edited child is never repaired), no status, no Secrets, autoscaler, gateway sidecar,
identity or budget, no server-side apply, no work queue. A 409 AlreadyExists counts
as done.

    KUBECONFIG=... .venv/bin/kopf run bench/naive_operator.py --namespace NS --standalone
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

try:
    config.load_kube_config()
except config.ConfigException:
    config.load_incluster_config()


def create_ignoring_conflict(create: Any, namespace: str, body: dict[str, Any]) -> None:
    try:
        create(namespace=namespace, body=body)
    except ApiException as err:
        if err.status != 409:  # AlreadyExists: a retry after a partial failure
            raise


@kopf.on.create("agents.dev", "v1alpha1", "agentdeployments")
def create_children(spec: kopf.Spec, name: str, namespace: str, body: kopf.Body, **_: Any) -> None:
    labels = {"app": name}
    container = {"name": "agent", "image": spec["image"], "ports": [{"containerPort": 8000}]}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8000}]},
    }
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-config", "labels": labels},
        "data": {"image": spec["image"]},
    }
    for child in (deployment, service, configmap):
        kopf.adopt(child, owner=body)
    create_ignoring_conflict(client.AppsV1Api().create_namespaced_deployment, namespace, deployment)
    create_ignoring_conflict(client.CoreV1Api().create_namespaced_service, namespace, service)
    create_ignoring_conflict(client.CoreV1Api().create_namespaced_config_map, namespace, configmap)
