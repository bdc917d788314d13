"""hack/podrun.py's pure helpers: which pod, which ports, which paths, which env.

The gateway's command line is the one the builder renders for an example, so
these tests also hold podrun to the sidecar contract: its remapped command
parses back to the rendered GatewayArgs with only pod-provided values changed.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

import podrun
from agent_operator.api import AgentDeployment
from agent_operator.builders.deployment import deployment
from agent_operator.builders.options import BuildOptions
from agent_operator.sidecar import SERVICE_ACCOUNT_DIR, Listen, parse

REPO = Path(__file__).resolve().parents[2]
PROVIDER = "http://127.0.0.1:18092/v1"
ROOT = Path("/var/lib/podrun/volumes/pod-1")
SERVER = "https://127.0.0.1:6443"


def rendered_pod(example: str = "autoscaled-with-budget.yaml") -> dict[str, Any]:
    """A Pod of the Deployment the builder renders for `example`, baseURL on the fake."""
    body = yaml.safe_load((REPO / "examples" / example).read_text())
    body["metadata"].update(namespace="demo", uid="agd-1")
    body["spec"]["model"]["baseURL"] = PROVIDER
    body["spec"]["clientAuth"] = {"enabled": True}
    spec = deployment(AgentDeployment.from_body(body), BuildOptions())["spec"]["template"]["spec"]
    return {
        "metadata": {"name": "support-bot-7d9-x1", "namespace": "demo", "uid": "pod-1"},
        "spec": spec,
    }


def owned(name: str, owner_uid: str, **meta: Any) -> dict[str, Any]:
    refs = [{"uid": owner_uid, "controller": True}]
    return {"metadata": {"name": name, "uid": f"uid-{name}", "ownerReferences": refs, **meta}}


# --- the pod --------------------------------------------------------------------------


def test_the_pod_is_a_live_one_of_the_current_replicaset() -> None:
    revision = {"annotations": {podrun.REVISION: "2"}}
    deploy = {"metadata": {"name": "bot", "uid": "d", **revision}}
    old = owned("bot-old", "d", annotations={podrun.REVISION: "1"})
    new = owned("bot-new", "d", **revision)
    stranger = owned("other-new", "x", **revision)
    pods = [
        owned("bot-old-a", "uid-bot-old"),
        owned("bot-new-b", "uid-bot-new"),
        owned("bot-new-a", "uid-bot-new", deletionTimestamp="2026-11-30T00:00:00Z"),
        owned("other-new-a", "uid-other-new"),
    ]
    picked = podrun.pick_pod(deploy, [old, new, stranger], pods)
    assert picked is not None and picked["metadata"]["name"] == "bot-new-b"
    assert podrun.pick_pod(deploy, [old, new], pods, name="bot-old-a") is None
    assert podrun.pick_pod(deploy, [old], pods) is None


# --- ports and paths ------------------------------------------------------------------


def test_the_pods_ports_are_declared_probed_and_listened_on() -> None:
    # 8081 (the outbound door) is in no containerPort: only in its listen flag
    assert podrun.pod_ports(rendered_pod()["spec"]) == [8000, 8080, 8081, 9090]


def test_ports_stay_where_free_else_move() -> None:
    fresh = iter([40001, 40002])
    ports = podrun.assign_ports([8000, 8080, 9090], lambda p: p != 8080, lambda: next(fresh))
    assert ports == {8000: 8000, 8080: 40001, 9090: 9090}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:8080", "127.0.0.1:40001"),
        ("127.0.0.1:8081", "127.0.0.1:40002"),
        ("http://127.0.0.1:8081/v1", "http://127.0.0.1:40002/v1"),
        ("http://localhost:8080", "http://127.0.0.1:40001"),
        ("[::]:8080", "127.0.0.1:40001"),
        (":8080", "127.0.0.1:40001"),
        ("http://api.example.com:8080/v1", "http://api.example.com:8080/v1"),  # not the pod
        ("http://10.0.0.127.0.0.1:8080", "http://10.0.0.127.0.0.1:8080"),
        ("127.0.0.1:18092", "127.0.0.1:18092"),  # not a port of the pod
        ("127.0.0.1:80800", "127.0.0.1:80800"),
    ],
)
def test_pod_local_addresses_are_remapped(text: str, expected: str) -> None:
    assert podrun.remap_addresses(text, {8080: 40001, 8081: 40002}) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/var/run/agents.dev/credentials", "/w/credentials"),
        ("/var/run/agents.dev/credentials/current", "/w/credentials/current"),
        ("--credentials-dir=/var/run/agents.dev/credentials", "--credentials-dir=/w/credentials"),
        ("/var/run/agents.dev/credentials-old", "/var/run/agents.dev/credentials-old"),
        ("/srv/var/run/agents.dev/credentials", "/srv/var/run/agents.dev/credentials"),
        ("/tmp", "/w/tmp"),
        ("/tmpfoo", "/tmpfoo"),
    ],
)
def test_mount_paths_are_remapped(text: str, expected: str) -> None:
    mounts = {"/var/run/agents.dev/credentials": Path("/w/credentials"), "/tmp/": Path("/w/tmp")}
    assert podrun.remap_paths(text, mounts) == expected


def test_the_gateway_runs_the_rendered_command_with_only_pod_values_remapped() -> None:
    pod = rendered_pod()
    gateway = podrun.container(pod["spec"], "gateway")
    rendered = gateway["command"]
    mounts = podrun.mount_dirs(gateway, ROOT)
    ports = {8000: 41000, 8080: 41001, 8081: 41002, 9090: 41003}
    argv = podrun.local_argv(rendered, mounts, ports, {"agent-operator": "/venv/agent-operator"})

    assert argv[0] == "/venv/agent-operator"
    assert argv[-2:] == ["--service-account-dir", str(ROOT / "gateway-token")]
    changed = {(a, b) for a, b in zip(rendered[1:], argv[1:-2], strict=True) if a != b}
    assert changed == {
        ("0.0.0.0:8080", "127.0.0.1:41001"),
        ("127.0.0.1:8081", "127.0.0.1:41002"),
        ("0.0.0.0:9090", "127.0.0.1:41003"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:41000"),
        ("/var/run/agents.dev/credentials", str(ROOT / "credentials")),
        ("/var/run/agents.dev/client-keys", str(ROOT / "client-keys")),
        ("/var/run/agents.dev/budget", str(ROOT / "budget")),
        ("/var/run/agents.dev/spend-journal", str(ROOT / "spend-journal")),
    }
    # the gateway's own parser reads it as the rendered settings, moved
    want = parse(rendered[2:])
    assert want.service_account_dir == Path(SERVICE_ACCOUNT_DIR)
    assert parse(argv[2:]) == dataclasses.replace(
        want,
        agent_url="http://127.0.0.1:41000",
        inbound_listen=Listen("127.0.0.1", 41001),
        outbound_listen=Listen("127.0.0.1", 41002),
        admin_listen=Listen("127.0.0.1", 41003),
        credentials_dir=ROOT / "credentials",
        client_keys_dir=ROOT / "client-keys",
        budget_dir=ROOT / "budget",
        spend_journal_dir=ROOT / "spend-journal",
        service_account_dir=ROOT / "gateway-token",
    )


def test_the_plan_runs_the_fake_at_the_base_url_and_the_agent_on_its_port() -> None:
    ports = {8000: 41000, 8080: 41001, 8081: 41002, 9090: 41003}
    plan = podrun.plan(rendered_pod(), SERVER, ROOT, ports, {"PATH": "/bin"}, lambda k, n: None)
    assert list(plan.commands) == ["provider", "agent", "gateway"]
    assert plan.commands["provider"][0][-2:] == ["--port", "18092"]
    agent_argv, agent_env = plan.commands["agent"]
    assert agent_argv[-2:] == ["--port", "41000"]
    assert agent_env == {
        "PATH": "/bin",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "6443",
        "OPENAI_BASE_URL": "http://127.0.0.1:41002/v1",
        "OPENAI_API_KEY": "injected-by-gateway",
        "AGENT_MODEL": "gpt-4o-mini",
    }
    gateway_env = plan.commands["gateway"][1]
    assert gateway_env["AGENT_GATEWAY_POD_NAME"] == "support-bot-7d9-x1"
    assert gateway_env["AGENT_GATEWAY_POD_UID"] == "pod-1"
    assert plan.ready == {
        "provider": "http://127.0.0.1:18092/v1/models",
        "agent": "http://127.0.0.1:41000/health",
        "gateway": "http://127.0.0.1:41003/readyz",
    }
    assert plan.addresses["gateway_inbound"] == "http://127.0.0.1:41001"
    assert plan.addresses["gateway_metrics"] == "http://127.0.0.1:41003/metrics"


def test_a_base_url_elsewhere_gets_no_fake() -> None:
    assert podrun.loopback_port("https://api.openai.com/v1") is None
    assert podrun.loopback_port("http://localhost/v1") == 80


# --- environment ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(A)/x", "1/x"),
        ("$$(A)", "$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("a$$b", "a$b"),
        ("$(A)$(B)", "12"),
    ],
)
def test_variable_references_expand_as_kubernetes_does(value: str, expected: str) -> None:
    assert podrun.expand(value, {"A": "1", "B": "2"}) == expected


def test_env_resolves_in_order_from_the_pod_and_objects() -> None:
    pod = {"metadata": {"name": "p", "uid": "u", "labels": {"app": "bot"}}, "spec": {}}
    secret = {"data": {"url": base64.b64encode(b"redis://r:6379").decode()}}
    c = {
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "s", "key": "url"}}},
            {"name": "BOTH", "value": "$(NAME)-$(APP)"},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "no", "optional": True}},
            },
        ]
    }
    env = podrun.container_env(c, pod, lambda kind, name: secret, {"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "NAME": "p",
        "APP": "bot",
        "IP": "127.0.0.1",
        "URL": "redis://r:6379",
        "BOTH": "p-bot",
    }
    with pytest.raises(podrun.PodError, match="no key 'url'"):
        podrun.container_env(c, pod, lambda kind, name: None, {})


# --- volumes --------------------------------------------------------------------------


def test_volumes_hold_the_live_objects_files() -> None:
    pod = rendered_pod()
    objects = {
        ("Secret", "support-bot-credentials"): {
            "data": {"current": base64.b64encode(b"k1").decode()}
        },
        ("ConfigMap", "support-bot-budget"): {"data": {"budget.json": "{}"}},
        ("ConfigMap", "kube-root-ca.crt"): {"data": {"ca.crt": "PEM", "other": "x"}},
    }
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert podrun.referenced_objects(volumes.values()) == {
        *objects,
        ("Secret", "support-bot-client-keys"),
    }

    def files(name: str) -> dict[str, str] | None:
        return podrun.volume_files(volumes[name], lambda k, n: objects.get((k, n)), pod, "TOKEN")

    assert files("credentials") == {"current": "k1"}
    assert files("budget") == {"budget.json": "{}"}
    assert files("gateway-token") == {"token": "TOKEN", "ca.crt": "PEM", "namespace": "demo"}
    assert files("spend-journal") is None  # an emptyDir
    with pytest.raises(podrun.PodError, match="support-bot-client-keys not found"):
        files("client-keys")
    source = podrun.token_source(volumes.values())
    assert source is not None and source["expirationSeconds"] == 3607


def test_a_token_is_renewed_at_80_percent_of_its_life() -> None:
    assert not podrun.token_due(1000.0, 2000.0, 1799.0)
    assert podrun.token_due(1000.0, 2000.0, 1800.0)
    assert podrun.token_due(0.0, 0.0, 1.0)  # none yet
