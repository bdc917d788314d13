"""The Helm chart on the real control plane: install, upgrade, uninstall, and the
operator running with nothing but the chart's RBAC and settings.

Pods run here only simulated (kwok: Running, but no container starts), so the
chart's own operator never runs: the tests assert on the objects Helm writes,
and run `agent-operator run` as a local process with the ServiceAccount's token
and the Deployment's environment.

What uninstall keeps (asserted below, and written in README.md): the CRDs
(Helm never deletes what it installed from crds/), so every AgentDeployment
stays; and the spend record policy (`helm.sh/resource-policy: keep`).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import yaml

import helm  # hack/ is on pytest's pythonpath
from localcluster import Cluster

if TYPE_CHECKING:
    from tests.e2e.conftest import OperatorProcess

pytestmark = pytest.mark.e2e

CHART = helm.CHART
REPO = CHART.parents[1]
POLICY = "gateway-writes-own-spend.agents.dev"
CRDS = (
    "agentdeployments.agents.dev",
    "spendrecords.agents.dev",
    "kopfpeerings.kopf.dev",
    "clusterkopfpeerings.kopf.dev",
)
# Built at collection, so a cold build never counts against a test's timeout.
HELM = helm.binary()
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str | Callable[[], str]) -> T:
    """`predicate`'s first true value; `what` (or what it returns then) names it on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out after {timeout}s waiting for {said}")
        time.sleep(0.25)


def get(cluster: Cluster, *what: str) -> dict[str, Any] | None:
    """One object as JSON, or None when it does not exist."""
    result = cluster.kubectl("get", *what, "-o", "json", "--show-managed-fields", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def absent(cluster: Cluster, *what: str) -> Callable[[], bool]:
    """A predicate: the object is gone."""
    return lambda: get(cluster, *what) is None


def present(cluster: Cluster, *what: str) -> Callable[[], bool]:
    """A predicate: the object exists."""
    return lambda: get(cluster, *what) is not None


def run_helm(cluster: Cluster, *args: str, check: bool = True) -> str:
    result = helm.run(*args, kubeconfig=cluster.kubeconfig, check=check)
    return result.stdout + result.stderr


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A release name unique to the test (cluster-scoped objects carry it); uninstalled after."""
    name = f"ao-{secrets.token_hex(3)}"
    yield name
    run_helm(cluster, "uninstall", name, "--namespace", namespace, "--ignore-not-found")


def test_install_upgrade_uninstall(cluster: Cluster, namespace: str, release: str) -> None:
    # As on a cluster where nobody applied crds/ by hand: the release creates the policy.
    for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
        cluster.kubectl("delete", kind, POLICY, "--ignore-not-found")
    fullname = f"{release}-agent-operator"
    try:
        out = run_helm(cluster, "install", release, str(CHART), "--namespace", namespace)
    finally:
        # Whatever happened, leave the policy as the other tests expect it.
        if get(cluster, "validatingadmissionpolicy", POLICY) is None:
            path = REPO / "crds" / "spendrecords.agents.dev.yaml"
            cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    assert "STATUS: deployed" in out, out
    assert f"installed as release {release}" in out  # NOTES.txt

    for name in CRDS:
        crd = get(cluster, "crd", name)
        assert crd is not None, name
        managers = {m["manager"] for m in crd["metadata"]["managedFields"]}
        assert "helm" in managers, (name, managers)  # applied by this install, not only before
    deployment = get(cluster, "-n", namespace, "deployment", fullname)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    settings = env_of(deployment)
    assert settings["AGENT_OPERATOR_PEERING"] == fullname
    assert settings["AGENT_OPERATOR_LOG_LEVEL"] == "info"
    assert "AGENT_OPERATOR_NAMESPACES" not in settings  # every namespace
    assert get(cluster, "-n", namespace, "serviceaccount", fullname) is not None
    assert get(cluster, "-n", namespace, "service", f"{fullname}-metrics") is not None
    assert get(cluster, "-n", namespace, "poddisruptionbudget", fullname) is not None
    assert get(cluster, "clusterkopfpeering", fullname) is not None
    role = get(cluster, "clusterrole", fullname)
    assert role is not None
    assert any("clusterkopfpeerings" in r["resources"] for r in role["rules"])
    binding = get(cluster, "clusterrolebinding", fullname)
    assert binding is not None
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": fullname, "namespace": namespace}
    ]
    policy = get(cluster, "validatingadmissionpolicy", POLICY)
    assert policy is not None
    assert policy["metadata"]["annotations"]["meta.helm.sh/release-name"] == release

    # an AgentDeployment made while the chart is installed (no operator runs here)
    agent = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(agent))

    # upgrade: one replica is standalone, without PDB or peering object
    out = run_helm(
        cluster,
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--reuse-values",
        "--set",
        "logLevel=debug",
        "--set",
        "replicaCount=1",
    )
    assert "REVISION: 2" in out, out
    deployment = get(cluster, "-n", namespace, "deployment", fullname)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    settings = env_of(deployment)
    assert settings["AGENT_OPERATOR_LOG_LEVEL"] == "debug"
    assert settings["AGENT_OPERATOR_STANDALONE"] == "true"
    assert "AGENT_OPERATOR_PEERING" not in settings
    assert get(cluster, "-n", namespace, "poddisruptionbudget", fullname) is None
    assert get(cluster, "clusterkopfpeering", fullname) is None
    role = get(cluster, "clusterrole", fullname)
    assert role is not None
    assert not any("clusterkopfpeerings" in r["resources"] for r in role["rules"])

    # uninstall: the templates' objects go; CRDs, AgentDeployments and the policy stay
    out = run_helm(cluster, "uninstall", release, "--namespace", namespace, "--wait")
    assert "uninstalled" in out, out
    assert POLICY in out  # helm names what its resource policy kept
    for what in (
        ("-n", namespace, "deployment", fullname),
        ("-n", namespace, "serviceaccount", fullname),
        ("-n", namespace, "service", f"{fullname}-metrics"),
        ("clusterrole", fullname),
        ("clusterrolebinding", fullname),
    ):
        wait_for(absent(cluster, *what), 30, f"{what} deleted")
    for name in CRDS:
        assert get(cluster, "crd", name) is not None, name
    assert get(cluster, "validatingadmissionpolicy", POLICY) is not None
    assert get(cluster, "validatingadmissionpolicybinding", POLICY) is not None
    assert get(cluster, "-n", namespace, "agentdeployment", agent["metadata"]["name"]) is not None
    assert run_helm(cluster, "list", "--namespace", namespace, "--short").strip() == ""


def agent_deployment(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "registry.example.com/bot:1.0",
        "credentials": {
            "issuer": {"type": "static", "secretRef": {"name": "upstream", "key": "apiKey"}}
        },
        "clientAuth": {"enabled": True},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
        "budget": {"limits": [{"period": "day", "maxUSD": 5}]},
    }
    base.update(spec)
    return {
        "apiVersion": "agents.dev/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": {"name": name},
        "spec": base,
    }


def test_operator_runs_with_the_charts_rbac(
    cluster: Cluster,
    namespace: str,
    release: str,
    agent_crd: None,
    make_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    """Namespaced mode, two replicas (peering): the operator, holding only the chart's
    Role, ClusterRole and settings, reconciles an AgentDeployment end to end."""
    fullname = f"{release}-agent-operator"
    values = ["--set", f"watchNamespaces={{{namespace}}}"]
    # The policy exists (applied by hand with crds/, or kept by an earlier release):
    # a new release may not take it over.
    refused = run_helm(
        cluster, "install", release, str(CHART), "--namespace", namespace, *values, check=False
    )
    assert f'ValidatingAdmissionPolicy "{POLICY}"' in refused, refused
    assert "cannot be imported into the current release" in refused, refused
    run_helm(cluster, "uninstall", release, "--namespace", namespace, "--ignore-not-found")
    run_helm(
        cluster,
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        *values,
        "--set",
        "spendRecordPolicy.create=false",
    )
    assert get(cluster, "-n", namespace, "role", fullname) is not None
    assert get(cluster, "-n", namespace, "kopfpeering", fullname) is not None
    deployment = get(cluster, "-n", namespace, "deployment", fullname)
    assert deployment is not None
    settings = env_of(deployment)
    assert settings["AGENT_OPERATOR_NAMESPACES"] == namespace

    kubeconfig = cluster.service_account_kubeconfig(namespace, fullname, tmp_path / "sa.json")
    # Least privilege: what the chart does not grant, the API server refuses.
    for outside in (
        ("-n", "kube-system", "get", "secrets"),  # a namespace it does not watch
        ("get", "secrets", "--all-namespaces"),
        ("-n", namespace, "delete", "deployment", "anything"),  # no delete of Deployments
        ("-n", namespace, "get", "pods", "some-pod"),  # pods: list only
        ("create", "namespace", f"{namespace}-x"),
    ):
        result = subprocess.run(
            [str(cluster.bin / "kubectl"), "--kubeconfig", str(kubeconfig), *outside],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0 and "forbidden" in result.stderr, (outside, result)
    # The Deployment's environment; the flags make_operator adds say the same (namespace)
    # or only pick free local ports.
    operator = make_operator(
        "chart-operator",
        "--peering",
        settings["AGENT_OPERATOR_PEERING"],
        env={**settings, "POD_NAME": f"{fullname}-0"},
        kubeconfig=kubeconfig,
    )
    operator.start()
    wait_for(lambda: operator.readyz()[0] == 200, 60, lambda: f"/readyz: {operator.readyz()}")

    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", "upstream", "--from-literal=apiKey=sk-1"
    )
    cluster.kubectl("-n", namespace, "label", "secret", "upstream", "agents.dev/issuer-source=true")
    body = agent_deployment("bot")
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    children = (
        "deployment/bot",
        "service/bot",
        "horizontalpodautoscaler/bot",
        "configmap/bot-budget",
        "secret/bot-credentials",
        "secret/bot-client-keys",
        "serviceaccount/bot-gateway",
        "role/bot-gateway",
        "rolebinding/bot-gateway",
    )
    for child in children:
        wait_for(present(cluster, "-n", namespace, child), 60, child)

    def status() -> dict[str, Any]:
        agd = get(cluster, "-n", namespace, "agentdeployment", "bot")
        return (agd or {}).get("status") or {}

    wait_for(
        lambda: status().get("observedGeneration") == 1 and status().get("phase") == "Ready",
        60,
        lambda: f"status: {status()}",
    )

    # the optional children go when the spec drops them (delete verbs)
    body["spec"].pop("autoscaling")
    body["spec"]["clientAuth"] = {"enabled": False}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    for gone in ("horizontalpodautoscaler/bot", "secret/bot-client-keys"):
        wait_for(absent(cluster, "-n", namespace, gone), 60, f"{gone} deleted")
    events = json.loads(
        cluster.kubectl(
            "-n",
            namespace,
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=AgentDeployment",
            "-o",
            "json",
        ).stdout
    )["items"]
    assert events, "no Events posted"

    logs = operator.logs()
    for refusal in ("Forbidden", "forbidden", " 403", "Not enough permissions"):
        assert refusal not in logs, f"{refusal!r} in the operator's log:\n{logs[-5000:]}"
    operator.stop()
    # The writes were the ServiceAccount's, and none was refused.
    identity = f"system:serviceaccount:{namespace}:{fullname}"
    # Split at newlines only: str.splitlines also splits at U+0085, which the API server
    # leaves unescaped in the hostile text of the fuzz tests' audit entries.
    lines = [line for line in cluster.audit_log.read_text().split("\n") if line]
    writes = [
        entry
        for entry in map(json.loads, lines)
        if entry.get("objectRef", {}).get("namespace") == namespace
        and entry["user"]["username"] in (identity, "agent-operator")
        and not entry.get("userAgent", "").startswith("kubectl")  # the refusals above
    ]
    assert {entry["user"]["username"] for entry in writes} == {identity}
    refused_writes = [e for e in writes if e["responseStatus"]["code"] == 403]
    assert not refused_writes, refused_writes[:3]
