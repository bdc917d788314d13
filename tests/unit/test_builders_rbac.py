"""The gateway's own identity (ServiceAccount, Role, RoleBinding X-gateway) and the pod
changes it brings: only the gateway container holds an API credential, limited to
its AgentDeployment's spend ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent_operator.api import AgentDeployment, InvalidSpec
from agent_operator.builders import (
    desired_children,
    gateway_args,
    gateway_command,
    gateway_role,
    gateway_role_binding,
    gateway_service_account,
)
from agent_operator.sidecar import (
    POD_NAME_ENV,
    POD_UID_ENV,
    REDIS_URL_ENV,
    SERVICE_ACCOUNT_DIR,
    SERVICE_ACCOUNT_VOLUME,
    TOKEN_EXPIRATION_SECONDS,
    parse,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = ["minimal", "autoscaled-with-budget", "full"]
UID = "0b5e3a52-1f44-4c1e-9a57-3d1b2f9e8c11"
REDIS = {
    "limits": [{"period": "day", "maxUSD": 5}],
    "store": "redis",
    "redis": {"urlSecretRef": {"name": "ledger-redis"}},
}


def load(example: str, **spec: Any) -> AgentDeployment:
    body = yaml.safe_load((REPO / "examples" / f"{example}.yaml").read_text())
    body["metadata"].update(uid=UID, namespace="team-a")
    body["spec"].update(spec)
    return AgentDeployment.from_body(body)


def pod_spec(agd: AgentDeployment) -> dict[str, Any]:
    [deploy] = [c for c in desired_children(agd) if c["kind"] == "Deployment"]
    spec: dict[str, Any] = deploy["spec"]["template"]["spec"]
    return spec


def containers(agd: AgentDeployment) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_spec(agd)["containers"]}


def test_role_grants_exactly_the_ledger_operations() -> None:
    role = gateway_role(load("minimal"))
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert role["metadata"]["name"] == "hello-agent-gateway"
    assert role["rules"] == [
        {
            "apiGroups": ["agents.dev"],
            "resources": ["spendrecords"],
            "verbs": ["get", "list", "watch", "create", "update"],
        },
        {
            "apiGroups": ["agents.dev"],
            "resources": ["agentdeployments"],
            "verbs": ["get"],
            "resourceNames": ["hello-agent"],
        },
    ]
    text = json.dumps(role["rules"])
    assert "secrets" not in text and "*" not in text
    assert not {"delete", "deletecollection", "patch", "escalate", "bind"} & {
        verb for rule in role["rules"] for verb in rule["verbs"]
    }


def test_service_account_and_binding() -> None:
    agd = load("minimal")
    account = gateway_service_account(agd)
    assert (account["kind"], account["metadata"]["name"]) == (
        "ServiceAccount",
        "hello-agent-gateway",
    )
    assert account["automountServiceAccountToken"] is False
    binding = gateway_role_binding(agd)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "hello-agent-gateway",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hello-agent-gateway", "namespace": "team-a"}
    ]


@pytest.mark.parametrize(
    "budget", [None, {}, {"limits": [{"period": "day", "maxUSD": 5}]}, REDIS], ids=str
)
def test_the_identity_exists_whatever_the_store(budget: dict[str, Any] | None) -> None:
    agd = load("minimal", budget=budget)
    children = desired_children(agd)
    kinds = [c["kind"] for c in children]
    assert kinds[kinds.index("ServiceAccount") : kinds.index("Deployment")] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
    ]
    assert pod_spec(agd)["serviceAccountName"] == "hello-agent-gateway"


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("budget", [None, REDIS], ids=["example-budget", "redis"])
def test_only_the_gateway_holds_an_api_credential(
    example: str, budget: dict[str, Any] | None
) -> None:
    agd = load(example, **({"budget": budget} if budget else {}))
    pod = pod_spec(agd)
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == f"{agd.name}-gateway"
    agent, gateway = pod["containers"]
    assert SERVICE_ACCOUNT_VOLUME not in {m["name"] for m in agent["volumeMounts"]}
    assert not any(m["mountPath"].startswith("/var/run/secrets") for m in agent["volumeMounts"])
    # The examples' own agent env takes nothing from a Secret, and we add nothing.
    assert "secretKeyRef" not in json.dumps(agent.get("env", []))
    assert "envFrom" not in agent
    mounts = {m["name"]: m for m in gateway["volumeMounts"]}
    assert mounts[SERVICE_ACCOUNT_VOLUME] == {
        "name": SERVICE_ACCOUNT_VOLUME,
        "mountPath": SERVICE_ACCOUNT_DIR,
        "readOnly": True,
    }
    env = {e["name"]: e for e in gateway["env"]}
    assert env[POD_NAME_ENV]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env[POD_UID_ENV]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.uid"}}


def test_token_volume_is_what_the_kubelet_would_automount() -> None:
    volumes = {v["name"]: v for v in pod_spec(load("minimal"))["volumes"]}
    assert volumes[SERVICE_ACCOUNT_VOLUME]["projected"]["sources"] == [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_EXPIRATION_SECONDS}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {
            "downwardAPI": {
                "items": [
                    {
                        "path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                    }
                ]
            }
        },
    ]
    # at least 10 minutes: the API server refuses shorter tokens
    assert TOKEN_EXPIRATION_SECONDS >= 600


@pytest.mark.parametrize(
    ("budget", "store"),
    [
        (None, "memory"),
        ({}, "memory"),  # nothing to share without a limit
        ({"limits": [{"period": "day", "maxUSD": 5}]}, "kubernetes"),
        ({"limits": [{"period": "day", "maxUSD": 5}], "store": "kubernetes"}, "kubernetes"),
        (REDIS, "redis"),
        ({k: v for k, v in REDIS.items() if k != "limits"}, "redis"),
    ],
    ids=str,
)
def test_spend_store_flag_follows_the_spec(budget: dict[str, Any] | None, store: str) -> None:
    agd = load("minimal", budget=budget)
    args = gateway_args(agd)
    assert (args.spend_store, args.agent_uid) == (store, UID)
    command = gateway_command(agd)
    assert command[command.index("--spend-store") + 1] == store
    assert parse(command[2:]) == args
    has_url = REDIS_URL_ENV in {e["name"] for e in containers(agd)["gateway"]["env"]}
    assert has_url == (store == "redis")


def test_redis_url_reaches_the_gateway_as_env_from_its_secret() -> None:
    spec = {**REDIS, "redis": {"urlSecretRef": {"name": "ledger-redis", "key": "rediss"}}}
    by_name = containers(load("full", budget=spec))
    [url] = [e for e in by_name["gateway"]["env"] if e["name"] == REDIS_URL_ENV]
    assert url == {
        "name": REDIS_URL_ENV,
        "valueFrom": {"secretKeyRef": {"name": "ledger-redis", "key": "rediss"}},
    }
    assert "ledger-redis" not in json.dumps(by_name["gateway"]["command"])  # never in argv
    assert "ledger-redis" not in json.dumps(by_name["agent"])
    default_key = containers(load("minimal", budget=REDIS))["gateway"]["env"][-1]
    assert default_key["valueFrom"]["secretKeyRef"] == {"name": "ledger-redis", "key": "url"}


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        ({"store": "redis"}, "spec.budget.redis: is required when store is redis"),
        ({"store": "redis", "redis": {}}, "spec.budget.redis.urlSecretRef: required value"),
        (
            {"store": "redis", "redis": {"urlSecretRef": {"key": "url"}}},
            "spec.budget.redis.urlSecretRef.name: required value",
        ),
    ],
)
def test_redis_without_its_url_is_refused_naming_the_field(
    budget: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidSpec) as info:
        load("minimal", budget=budget)
    assert expected in info.value.errors


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("budget", [None, REDIS], ids=["example-budget", "redis"])
def test_children_pass_the_kubernetes_schema(example: str, budget: dict[str, Any] | None) -> None:
    agd = load(example, **({"budget": budget} if budget else {}))
    for child in desired_children(agd):
        assert kubernetes_validate.validate(child, "1.37", strict=True) == "1.37", child["kind"]
