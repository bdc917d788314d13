"""Desired versus live: subset, quantities, and the shape hash that releases fields."""

from __future__ import annotations

import copy
from typing import Any

from agent_operator.api import AgentDeployment
from agent_operator.builders import BuildOptions, deployment
from agent_operator.operator.compare import (
    HASH_ANNOTATION,
    desired_hash,
    is_subset,
    replicas_handoff,
    verdict,
    with_hash,
)


def agd(**spec: Any) -> AgentDeployment:
    body = {
        "apiVersion": "agents.dev/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": {"name": "bot", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {"image": "img:1", "credentials": {"issuer": {"type": "generated"}}, **spec},
    }
    return AgentDeployment.from_body(body)


def served(desired: dict[str, Any]) -> dict[str, Any]:
    """What the API server hands back: defaults, other managers' fields, status."""
    live = copy.deepcopy(desired)
    live["metadata"].update(uid="x", resourceVersion="7", creationTimestamp="2026-01-01T00:00:00Z")
    live["metadata"]["labels"]["team"] = "search"  # a user's label
    live["spec"]["revisionHistoryLimit"] = 10
    live["spec"]["progressDeadlineSeconds"] = 600
    for container in live["spec"]["template"]["spec"]["containers"]:
        container["terminationMessagePath"] = "/dev/termination-log"
        container.setdefault("imagePullPolicy", "IfNotPresent")
    live["status"] = {"replicas": 1}
    return live


def test_server_defaults_and_foreign_fields_are_in_sync() -> None:
    desired = with_hash(deployment(agd(), BuildOptions()))
    assert verdict(desired, served(desired)) is None


def test_missing_live_object_needs_apply() -> None:
    assert verdict(with_hash(deployment(agd(), BuildOptions())), None) == "missing"


def test_changed_value_is_drift() -> None:
    desired = with_hash(deployment(agd(), BuildOptions()))
    live = served(desired)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "img:0"
    assert verdict(desired, live) == "drifted"


def test_quantities_compare_canonically() -> None:
    desired = with_hash(
        deployment(agd(resources={"requests": {"cpu": "0.5", "memory": "1Gi"}}), BuildOptions())
    )
    live = served(desired)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = {
        "cpu": "500m",
        "memory": "1024Mi",
    }
    assert verdict(desired, live) is None
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "600m"
    assert verdict(desired, live) == "drifted"


def test_empty_values_the_server_omits_are_in_sync() -> None:
    # The API server drops an EnvVar's `value: ""`: live has {"name": "EMPTY"} only.
    desired = with_hash(deployment(agd(env=[{"name": "EMPTY", "value": ""}]), BuildOptions()))
    live = served(desired)
    env = live["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[-1] == {"name": "EMPTY", "value": ""}
    env[-1] = {"name": "EMPTY"}
    assert verdict(desired, live) is None
    # a non-empty value that went missing, or a changed one, is still drift
    assert is_subset({"env": [{"name": "E", "value": "x"}]}, {"env": [{"name": "E"}]}) is False
    assert (
        is_subset({"env": [{"name": "E", "value": ""}]}, {"env": [{"name": "E", "value": "x"}]})
        is False
    )
    assert is_subset({"args": []}, {}) is True and is_subset({"args": []}, {"args": ["a"]}) is True
    assert is_subset({"replicas": 0}, {}) is False  # zero numbers are not omitted


def test_quantity_canonicalisation_only_applies_to_quantity_fields() -> None:
    assert is_subset({"command": ["1.0"]}, {"command": ["1"]}) is False
    assert is_subset({"requests": {"cpu": "1.0"}}, {"requests": {"cpu": "1"}}) is True


def test_dropping_replicas_changes_the_hash_though_live_is_a_superset() -> None:
    manual = with_hash(deployment(agd(replicas=2), BuildOptions()))
    plain = deployment(agd(autoscaling={"maxReplicas": 5}), BuildOptions())
    assert "replicas" not in plain["spec"]
    live = served(manual)
    assert is_subset(plain, live)  # the subset test alone would miss it
    assert verdict(with_hash(plain), live) == "fields-changed"


def test_hash_ignores_values_and_its_own_annotation() -> None:
    one = deployment(agd(), BuildOptions())
    two = deployment(agd(image="img:2"), BuildOptions())
    assert desired_hash(one) == desired_hash(two)
    assert desired_hash(with_hash(one)) == desired_hash(one)
    assert with_hash(one)["metadata"]["annotations"][HASH_ANNOTATION] == desired_hash(one)


def test_lists_tolerate_foreign_elements_but_not_reordering() -> None:
    assert is_subset({"a": [{"name": "x"}]}, {"a": [{"name": "x"}, {"name": "injected"}]})
    assert not is_subset(
        {"a": [{"name": "x"}, {"name": "y"}]}, {"a": [{"name": "y"}, {"name": "x"}]}
    )
    assert not is_subset({"a": [1, 2]}, {"a": [1]})


def test_types_matter() -> None:
    assert not is_subset({"a": True}, {"a": 1})
    assert not is_subset({"a": "1"}, {"a": 1})
    assert is_subset({"a": 1}, {"a": 1.0})
    assert is_subset({"a": None}, {})
    assert not is_subset({"a": {}}, {})


def _deployment(replicas: int | None, owner_has_replicas: bool) -> dict[str, Any]:
    spec_fields: dict[str, Any] = {"f:template": {}}
    if owner_has_replicas:
        spec_fields["f:replicas"] = {}
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "bot",
            "namespace": "ns",
            "managedFields": [
                {
                    "manager": "agent-operator",
                    "operation": "Apply",
                    "fieldsV1": {"f:spec": spec_fields},
                }
            ],
        },
        "spec": {"template": {}},
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body


def test_releasing_replicas_hands_the_live_count_over() -> None:
    desired = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bot", "namespace": "ns"},
        "spec": {"template": {}},
    }
    live = _deployment(replicas=3, owner_has_replicas=True)
    handoff = replicas_handoff(desired, live, "agent-operator")
    assert handoff == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bot", "namespace": "ns"},
        "spec": {"replicas": 3},
    }


def test_no_handoff_while_we_keep_or_no_longer_own_replicas() -> None:
    keeping = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bot", "namespace": "ns"},
        "spec": {"replicas": 2},
    }
    releasing = {**keeping, "spec": {}}
    assert replicas_handoff(keeping, _deployment(3, True), "agent-operator") is None
    assert replicas_handoff(releasing, _deployment(3, False), "agent-operator") is None
    assert replicas_handoff(releasing, None, "agent-operator") is None
