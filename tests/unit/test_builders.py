"""The pod, the Service, the HPA, the Secrets and the budget: the rules of each child."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_operator.api import MAX_ENV_BYTES, AgentDeployment
from agent_operator.builders import BuildOptions, desired_children, gateway_command
from agent_operator.prices import BUILTIN_PRICES

REPO = Path(__file__).resolve().parents[2]
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABELS = {
    "app.kubernetes.io/name": "{name}",
    "app.kubernetes.io/managed-by": "agent-operator",
    "agents.dev/agent": "{name}",
}
# The gateway's identity, before the Deployment whose pods run as it.
IDENTITY = ["ServiceAccount", "Role", "RoleBinding"]


def load(example: str, **spec: Any) -> AgentDeployment:
    body = yaml.safe_load((REPO / "examples" / f"{example}.yaml").read_text())
    body["metadata"].update(uid="0b5e3a52-1f44-4c1e-9a57-3d1b2f9e8c11", namespace="team-a")
    body["spec"].update(spec)
    return AgentDeployment.from_body(body)


def by_kind(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{c['kind']}/{c['metadata']['name']}": c for c in children}


def containers(agd: AgentDeployment) -> dict[str, dict[str, Any]]:
    pod = by_kind(desired_children(agd))[f"Deployment/{agd.name}"]["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


@pytest.mark.parametrize(
    ("example", "kinds"),
    [
        ("minimal", ["ConfigMap", "Secret", *IDENTITY, "Deployment", "Service"]),
        (
            "autoscaled-with-budget",
            [
                "ConfigMap",
                "Secret",
                "Secret",
                *IDENTITY,
                "Deployment",
                "Service",
                "HorizontalPodAutoscaler",
            ],
        ),
        (
            "full",
            [
                "ConfigMap",
                "Secret",
                "Secret",
                *IDENTITY,
                "Deployment",
                "Service",
                "HorizontalPodAutoscaler",
            ],
        ),
    ],
)
def test_children_in_stable_order(example: str, kinds: list[str]) -> None:
    children = desired_children(load(example))
    assert [c["kind"] for c in children] == kinds
    assert children == desired_children(load(example))


def test_child_names() -> None:
    names = [c["metadata"]["name"] for c in desired_children(load("full"))]
    assert names == [
        "research-agent-budget",
        "research-agent-credentials",
        "research-agent-client-keys",
        "research-agent-gateway",
        "research-agent-gateway",
        "research-agent-gateway",
        "research-agent",
        "research-agent",
        "research-agent",
    ]


@pytest.mark.parametrize("example", ["minimal", "autoscaled-with-budget", "full"])
def test_labels_and_owner_reference_on_every_child(example: str) -> None:
    agd = load(example)
    labels = {k: v.format(name=agd.name) for k, v in LABELS.items()}
    for child in desired_children(agd):
        meta = child["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["labels"] == labels
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "agents.dev/v1alpha1",
                "kind": "AgentDeployment",
                "name": agd.name,
                "uid": agd.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        if child["kind"] == "Deployment":
            assert child["spec"]["template"]["metadata"]["labels"] == labels
            assert child["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("example", ["minimal", "full"])
def test_agent_never_sees_a_provider_key(example: str) -> None:
    agd = load(example)
    agent = containers(agd)["agent"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["OPENAI_BASE_URL"] == {
        "name": "OPENAI_BASE_URL",
        "value": "http://127.0.0.1:8081/v1",
    }
    assert env["OPENAI_API_KEY"] == {"name": "OPENAI_API_KEY", "value": "injected-by-gateway"}
    text = json.dumps(agent)
    assert "credentials" not in text and "client-keys" not in text and "budget" not in text
    assert "envFrom" not in agent
    assert [m["name"] for m in agent["volumeMounts"]] == ["agent-tmp"]


def test_anthropic_agent_env() -> None:
    agd = load("minimal", model={"provider": "anthropic"})
    env = {e["name"]: e.get("value") for e in containers(agd)["agent"]["env"]}
    assert env == {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8081",
        "ANTHROPIC_API_KEY": "injected-by-gateway",
    }
    assert gateway_command(agd)[2:6] == [
        "--provider",
        "anthropic",
        "--upstream-url",
        "https://api.anthropic.com",
    ]


def test_user_env_follows_ours_and_model_names_reach_the_agent() -> None:
    names = [e["name"] for e in containers(load("full"))["agent"]["env"]]
    assert names == [
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "AGENT_MODEL",
        "AGENT_MODEL_SIMPLE",
        "AGENT_MODEL_MEDIUM",
        "AGENT_MODEL_COMPLEX",
        "LOG_LEVEL",
        "POD_NAME",
    ]


def test_only_the_gateway_mounts_keys_and_budget_as_whole_volumes() -> None:
    gateway = containers(load("full"))["gateway"]
    mounts = {m["name"]: m for m in gateway["volumeMounts"]}
    assert {n: m["mountPath"] for n, m in mounts.items()} == {
        "credentials": "/var/run/agents.dev/credentials",
        "client-keys": "/var/run/agents.dev/client-keys",
        "budget": "/var/run/agents.dev/budget",
        "gateway-token": "/var/run/secrets/kubernetes.io/serviceaccount",
        "spend-journal": "/var/run/agents.dev/spend-journal",
        "gateway-tmp": "/tmp",
    }
    assert all("subPath" not in m and "subPathExpr" not in m for m in mounts.values())
    assert all(
        mounts[n]["readOnly"] for n in ("credentials", "client-keys", "budget", "gateway-token")
    )
    assert "envFrom" not in gateway


def test_volumes() -> None:
    def volumes(agd: AgentDeployment) -> dict[str, Any]:
        deploy = by_kind(desired_children(agd))[f"Deployment/{agd.name}"]
        return {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}

    full = volumes(load("full"))
    assert full["credentials"] == {
        "name": "credentials",
        "secret": {"secretName": "research-agent-credentials"},
    }
    assert full["client-keys"]["secret"] == {"secretName": "research-agent-client-keys"}
    assert full["budget"]["configMap"] == {"name": "research-agent-budget"}
    # each container its own scratch space: nothing writable is shared
    assert full["agent-tmp"] == {"name": "agent-tmp", "emptyDir": {}}
    assert full["gateway-tmp"] == {"name": "gateway-tmp", "emptyDir": {}}
    assert "tmp" not in full
    assert "client-keys" not in volumes(load("minimal"))
    assert "--client-keys-dir" not in gateway_command(load("minimal"))


def test_gateway_command_is_the_documented_one() -> None:
    assert gateway_command(load("full")) == [
        "agent-operator", "gateway",
        "--provider", "openai",
        "--upstream-url", "https://api.openai.com/v1",
        "--agent-url", "http://127.0.0.1:8000",
        "--inbound-listen", "0.0.0.0:8080",
        "--outbound-listen", "127.0.0.1:8081",
        "--admin-listen", "0.0.0.0:9090",
        "--credentials-dir", "/var/run/agents.dev/credentials",
        "--client-keys-dir", "/var/run/agents.dev/client-keys",
        "--budget-dir", "/var/run/agents.dev/budget",
        "--timeout-seconds", "30",
        "--retry-attempts", "3",
        "--retry-backoff-min-seconds", "1",
        "--retry-backoff-max-seconds", "10",
        "--breaker-failure-threshold", "5",
        "--breaker-open-seconds", "30",
        "--prompt-guard", "block",
        "--prompt-guard-extra-pattern", "(?i)reveal your system prompt",
        "--prompt-guard-outbound", "block",
        "--prompt-guard-outbound-role", "user",
        "--max-request-body-bytes", "4194304",
        "--allow-unmetered", "completions",
        "--spend-store", "kubernetes",
        "--agent-uid", "0b5e3a52-1f44-4c1e-9a57-3d1b2f9e8c11",
        "--spend-journal-dir", "/var/run/agents.dev/spend-journal",
        "--otlp-endpoint", "http://otel-collector.observability:4318",
        "--agent", "research-agent",
        "--namespace", "team-a",
    ]  # fmt: skip
    assert containers(load("full"))["gateway"]["command"] == gateway_command(load("full"))


def test_gateway_command_follows_the_spec() -> None:
    agd = load(
        "minimal",
        port=3000,
        model={"provider": "openai-compatible", "baseURL": "http://vllm.models:8000/v1"},
        gateway={
            "timeoutSeconds": 2.5,
            "retries": {"attempts": 1, "backoffMinSeconds": 0.25, "backoffMaxSeconds": 0.5},
            "promptGuard": {"mode": "flag", "extraPatterns": ["a+", "-{3,}"]},
        },
    )
    command = gateway_command(agd)
    flags = dict(zip(command[2::2], command[3::2], strict=False))
    assert flags["--provider"] == "openai-compatible"
    assert flags["--upstream-url"] == "http://vllm.models:8000/v1"
    assert flags["--agent-url"] == "http://127.0.0.1:3000"
    assert flags["--timeout-seconds"] == "2.5"
    assert flags["--retry-backoff-min-seconds"] == "0.25"
    assert flags["--prompt-guard"] == "flag"
    assert "--otlp-endpoint" not in command
    # A pattern that looks like an option is passed as --flag=value.
    assert command[-17:-14] == [
        "--prompt-guard-extra-pattern",
        "a+",
        "--prompt-guard-extra-pattern=-{3,}",
    ]
    # tool results are flagged unless the spec says otherwise
    assert command[-14:-12] == ["--prompt-guard-outbound", "flag"]
    assert command[-12:-10] == ["--max-request-body-bytes", "4194304"]
    assert command[-10:-4] == [
        "--spend-store", "memory",
        "--agent-uid", "0b5e3a52-1f44-4c1e-9a57-3d1b2f9e8c11",
        "--spend-journal-dir", "/var/run/agents.dev/spend-journal",
    ]  # fmt: skip
    assert command[-4:] == ["--agent", "hello-agent", "--namespace", "team-a"]


def test_gateway_command_carries_body_limit_and_unmetered_endpoints_sorted() -> None:
    agd = load(
        "minimal",
        gateway={"maxRequestBodyBytes": 1024, "allowUnmeteredEndpoints": ["images", "audio"]},
    )
    command = gateway_command(agd)
    start = command.index("--max-request-body-bytes")
    assert command[start : start + 6] == [
        "--max-request-body-bytes", "1024",
        "--allow-unmetered", "audio",
        "--allow-unmetered", "images",
    ]  # fmt: skip
    assert "--allow-unmetered" not in gateway_command(load("minimal"))


@pytest.mark.parametrize("name", ["agent", "gateway"])
def test_restricted_security_on_both_containers(name: str) -> None:
    agd = load("full")
    context = containers(agd)[name]["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in context
    pod = by_kind(desired_children(agd))["Deployment/research-agent"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "hostNetwork" not in pod
    # no automatic token: only the gateway mounts one (test_builders_rbac.py)
    assert pod["automountServiceAccountToken"] is False


def test_probes() -> None:
    agd = load("minimal", port=3000, healthPath="/ping")
    by_name = containers(agd)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert by_name["agent"][probe]["httpGet"] == {"path": "/ping", "port": 3000}
    assert by_name["gateway"]["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9090}
    assert by_name["gateway"]["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9090}


def test_gateway_ports_and_service() -> None:
    agd = load("minimal")
    ports = {p["name"]: p["containerPort"] for p in containers(agd)["gateway"]["ports"]}
    assert ports == {"http": 8080, "admin": 9090}  # 8081 is loopback only
    svc = by_kind(desired_children(agd))["Service/hello-agent"]["spec"]
    assert svc["selector"] == {"agents.dev/agent": "hello-agent"}
    # The admin port (health, metrics) is for the kubelet and Prometheus, not callers.
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["ports"]] == [
        ("http", 8080, "http"),
    ]


def test_replicas_without_autoscaling() -> None:
    deploy = by_kind(desired_children(load("minimal")))["Deployment/hello-agent"]
    assert deploy["spec"]["replicas"] == 1
    deploy = by_kind(desired_children(load("minimal", replicas=0)))["Deployment/hello-agent"]
    assert deploy["spec"]["replicas"] == 0


def test_autoscaling_leaves_replicas_to_the_hpa() -> None:
    children = by_kind(desired_children(load("autoscaled-with-budget")))
    assert "replicas" not in children["Deployment/support-bot"]["spec"]
    hpa = children["HorizontalPodAutoscaler/support-bot"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "support-bot",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    ]


def test_inflight_metric() -> None:
    hpa = by_kind(desired_children(load("full")))["HorizontalPodAutoscaler/research-agent"]
    assert hpa["spec"]["metrics"][1] == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "agent_gateway_inflight_requests"},
            "target": {"type": "AverageValue", "averageValue": "20"},
        },
    }


def test_secrets_are_metadata_only() -> None:
    for child in desired_children(load("full")):
        if child["kind"] == "Secret":
            assert set(child) == {"apiVersion", "kind", "metadata", "type"}
            assert child["type"] == "Opaque"


def test_budget_json_merges_prices_spec_wins() -> None:
    cm = by_kind(desired_children(load("full")))["ConfigMap/research-agent-budget"]
    assert list(cm["data"]) == ["budget.json"]
    budget = json.loads(cm["data"]["budget.json"])
    assert list(budget) == [
        "limits",
        "alertThresholds",
        "onExhausted",
        "downgradeModel",
        "prices",
        "unknownModelPrice",
    ]
    assert budget["limits"] == [
        {"period": "day", "maxUSD": 50.0},
        {"period": "month", "maxUSD": 1000.0},
    ]
    assert budget["alertThresholds"] == [0.5, 0.8, 0.95]
    assert (budget["onExhausted"], budget["downgradeModel"]) == ("downgrade", "gpt-4o-mini")
    assert budget["prices"]["my-finetune"] == {"input": 3.0, "output": 12.0}
    assert budget["prices"]["gpt-4o"] == {"input": 2.5, "output": 10.0}
    assert set(BUILTIN_PRICES) <= set(budget["prices"])
    assert budget["unknownModelPrice"] == {"input": 20.0, "output": 80.0}


def test_budget_json_without_budget_has_no_limits_but_prices() -> None:
    cm = by_kind(desired_children(load("minimal")))["ConfigMap/hello-agent-budget"]
    budget = json.loads(cm["data"]["budget.json"])
    assert budget["limits"] == []
    assert budget["onExhausted"] == "reject"
    assert budget["prices"]["gpt-4o-mini"] == {"input": 0.15, "output": 0.6}
    assert budget["unknownModelPrice"] == {"input": 15.0, "output": 60.0}


def test_pod_template_has_no_content_hashes_and_is_scraped_on_the_admin_port() -> None:
    template = by_kind(desired_children(load("full")))["Deployment/research-agent"]["spec"][
        "template"
    ]
    annotations = template["metadata"].get("annotations", {})
    assert annotations == {
        "kubectl.kubernetes.io/default-container": "agent",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
    }


def test_build_options() -> None:
    options = BuildOptions(
        gateway_image="registry.example.com/agent-operator:9.9.9",
        gateway_image_pull_policy="Always",
    )
    deploy = by_kind(desired_children(load("minimal"), options))["Deployment/hello-agent"]
    gateway = deploy["spec"]["template"]["spec"]["containers"][1]
    assert (gateway["image"], gateway["imagePullPolicy"]) == (
        "registry.example.com/agent-operator:9.9.9",
        "Always",
    )
    assert BuildOptions().gateway_image == "agent-operator:0.1.0"


def test_longest_name_gives_valid_child_names() -> None:
    longest = "a" + "b" * 50
    body = yaml.safe_load((REPO / "examples" / "full.yaml").read_text())
    body["metadata"]["name"] = longest
    children = desired_children(AgentDeployment.from_body(body))
    for child in children:
        name = child["metadata"]["name"]
        assert DNS1123_LABEL.match(name) and len(name) <= 63, name
        for value in child["metadata"]["labels"].values():
            assert len(value) <= 63
    assert max(len(c["metadata"]["name"]) for c in children) == 63


def test_builders_are_pure() -> None:
    agd = load("full")
    before = agd.model_dump()
    first = desired_children(agd)
    by_kind(first)["Deployment/research-agent"]["spec"]["template"]["spec"]["containers"][0][
        "env"
    ].clear()
    assert desired_children(agd) != first
    assert agd.model_dump() == before


def test_the_largest_valid_spec_renders_children_the_server_can_store() -> None:
    """Every bound of the spec at its maximum at once: each child stays under 1 MiB
    (etcd stores ~1.5 MiB per object; managedFields and status need the rest)."""
    per_value = MAX_ENV_BYTES // 16
    env = [{"name": f"V{i:03d}".ljust(256, "x"), "value": "v" * per_value} for i in range(16)]
    env += [{"name": f"W{i:03d}".ljust(256, "x")} for i in range(256 - 16)]
    prices = {f"m{i:03d}".ljust(256, "x"): {"input": 1.5, "output": 2.5} for i in range(256)}
    agd = load(
        "full",
        env=env,
        budget={"prices": prices},
        gateway={"promptGuard": {"extraPatterns": ["a" * 1024] * 64}},
    )
    sizes = {
        f"{c['kind']}/{c['metadata']['name']}": len(json.dumps(c).encode())
        for c in desired_children(agd)
    }
    assert sizes["Deployment/research-agent"] > MAX_ENV_BYTES  # the bounds were reached
    assert max(sizes.values()) < 1024 * 1024, sizes
