"""Property tests over generated valid AgentDeployments.

The strategy (tests/strategies.py) encodes the CRD's rules; for everything it generates, the
models must agree it is valid, and every child must pass the Kubernetes
1.37 JSON schemas (kubernetes-validate, strict: no unknown fields).
"""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import yaml
from hypothesis import HealthCheck, given, settings

from agent_operator.api import AgentDeployment
from agent_operator.builders import desired_children
from agent_operator.render import to_yaml
from tests.strategies import manifests

K8S_VERSION = "1.37"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(manifests())
def test_children_pass_the_kubernetes_schemas(manifest: dict[str, Any]) -> None:
    agd = AgentDeployment.from_body(manifest)
    children = desired_children(agd)
    for child in children:
        assert kubernetes_validate.validate(child, K8S_VERSION, strict=True) == K8S_VERSION
    assert list(yaml.safe_load_all(to_yaml(children))) == json.loads(json.dumps(children))


@PROPERTY
@given(manifests())
def test_names_labels_and_ownership(manifest: dict[str, Any]) -> None:
    agd = AgentDeployment.from_body(manifest)
    for child in desired_children(agd):
        meta = child["metadata"]
        assert DNS1123_LABEL.match(meta["name"]) and len(meta["name"]) <= 63
        for key, value in meta["labels"].items():
            assert LABEL_VALUE.match(value) and len(value) <= 63, (key, value)
        assert meta["ownerReferences"][0]["name"] == agd.name
        if child["kind"] == "Deployment":
            spec = child["spec"]
            assert ("replicas" in spec) == (agd.spec.autoscaling is None)
            pod = spec["template"]["spec"]
            agent, gateway = pod["containers"]
            assert (agent["name"], gateway["name"]) == ("agent", "gateway")
            # the agent mounts no token, only its /tmp
            assert [m["name"] for m in agent["volumeMounts"]] == ["agent-tmp"]
            assert pod["serviceAccountName"] == f"{agd.name}-gateway"
            gateway_mounts = {m["name"] for m in gateway["volumeMounts"]}
            assert "agent-tmp" not in gateway_mounts  # no writable volume is shared
            assert pod["automountServiceAccountToken"] is False
            assert not any("secretKeyRef" in json.dumps(e) for e in agent["env"][:2])
            assert spec["template"]["metadata"]["labels"] == meta["labels"]


@PROPERTY
@given(manifests())
def test_spec_round_trips_through_the_model(manifest: dict[str, Any]) -> None:
    """The operator may dump a spec and read it back: nothing changes."""
    agd = AgentDeployment.from_body(manifest)
    dumped = agd.model_dump(mode="json", by_alias=True, exclude_none=True)
    again = AgentDeployment.from_body(dumped)
    assert again.spec == agd.spec
    assert desired_children(again) == desired_children(agd)
