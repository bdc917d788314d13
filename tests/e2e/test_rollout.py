"""Rollouts on the cluster's simulated nodes: the pods of an AgentDeployment run
(kwok), so it reaches phase Ready, and a spec change rolls out through a new
ReplicaSet and back to Ready at the new generation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from tests.e2e.test_operator import (
    agd,
    apply,
    converged,
    get,
    manifest,
    phase_ready,
    source_secret,
    wait_for,
)

from localcluster import NODE_NAMES, Cluster

if TYPE_CHECKING:
    from tests.e2e.conftest import OperatorProcess

pytestmark = pytest.mark.e2e

LABEL = "agents.dev/agent=bot"


def conditions(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}


def replicasets(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    """The Deployment's ReplicaSets by their pod-template hash."""
    found = get(cluster, namespace, "replicasets", "-l", LABEL)
    assert found is not None
    return {rs["metadata"]["labels"]["pod-template-hash"]: rs for rs in found["items"]}


def pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    found = get(cluster, namespace, "pods", "-l", LABEL)
    assert found is not None
    items: list[dict[str, Any]] = found["items"]
    return items


def running_and_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready_now = any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
    )
    return status.get("phase") == "Running" and ready_now


def image(pod_or_template: dict[str, Any]) -> str:
    containers = pod_or_template["spec"]["containers"]
    found: str = next(c["image"] for c in containers if c["name"] == "agent")
    return found


def test_agent_deployment_reaches_ready(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest(replicas=2))

    body = wait_for(lambda: phase_ready(cluster, namespace), 60, "phase Ready")

    status = body["status"]
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    ready_condition = conditions(body)["Ready"]
    assert (ready_condition["status"], ready_condition["reason"]) == ("True", "Ready")
    assert ready_condition["observedGeneration"] == body["metadata"]["generation"]
    assert conditions(body)["Progressing"]["reason"] == "RolloutComplete"
    # what made it Ready: the Deployment is Available, its pods run on a simulated node
    deployment = get(cluster, namespace, "deployment", "bot")
    assert deployment is not None
    assert conditions(deployment)["Available"]["status"] == "True"
    assert deployment["status"]["availableReplicas"] == 2
    running = pods(cluster, namespace)
    assert len(running) == 2 and all(running_and_ready(p) for p in running), running
    assert {p["spec"]["nodeName"] for p in running} <= set(NODE_NAMES)
    for pod in running:
        started = {c["name"]: c["state"] for c in pod["status"]["containerStatuses"]}
        assert set(started) == {"agent", "gateway"}
        assert all("running" in state for state in started.values()), started


def test_new_image_rolls_out(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest(replicas=3))
    first = wait_for(lambda: phase_ready(cluster, namespace), 60, "phase Ready")
    [old_hash] = replicasets(cluster, namespace)

    apply(cluster, namespace, manifest(replicas=3, image="registry.example.com/bot:2.0"))
    wait_for(lambda: converged(cluster, namespace), 30, "the new template applied")

    def rolled_out() -> dict[str, Any] | None:
        sets = replicasets(cluster, namespace)
        new = [rs for key, rs in sets.items() if key != old_hash]
        if len(new) != 1 or sets[old_hash]["status"].get("replicas", 0) != 0:
            return None
        live = [p for p in pods(cluster, namespace) if not p["metadata"].get("deletionTimestamp")]
        done = new[0]["status"].get("availableReplicas") == 3 and len(live) == 3
        return new[0] if done and all(running_and_ready(p) for p in live) else None

    new_set = wait_for(rolled_out, 90, "the new ReplicaSet available, the old one scaled down")
    assert image(new_set["spec"]["template"]).endswith(":2.0")
    # the old pods are gone (kwok finishes their deletion), the new ones run the new image
    wait_for(lambda: len(pods(cluster, namespace)) == 3, 60, "the old pods deleted")
    assert {image(p) for p in pods(cluster, namespace)} == {"registry.example.com/bot:2.0"}

    body = wait_for(lambda: phase_ready(cluster, namespace), 60, "phase Ready again")
    generation = body["metadata"]["generation"]
    assert generation == first["metadata"]["generation"] + 1
    assert body["status"]["observedGeneration"] == generation
    ready_condition = conditions(body)["Ready"]
    assert ready_condition["status"] == "True"
    assert ready_condition["observedGeneration"] == generation
    assert ready_condition["message"] == "3 of 3 replicas ready"
    # The rollout showed: the phase left Ready while the new pods came up.
    found = get(
        cluster, namespace, "events", "--field-selector", "involvedObject.kind=AgentDeployment"
    )
    assert found is not None
    messages = [e["message"] for e in found["items"]]
    assert any(m.startswith("phase Ready -> Progressing: ") for m in messages), messages
    assert agd(cluster, namespace)["status"]["phase"] == "Ready"
