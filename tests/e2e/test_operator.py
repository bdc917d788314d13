"""The operator on the real control plane: level-triggered, idempotent, owns only its fields.

Each test runs `agent-operator run` as a subprocess (user agent-operator,
scoped to the test's namespace). Pods run on the cluster's simulated nodes
(kwok: Running and Ready as soon as they are bound), so a converged
AgentDeployment reaches phase Ready.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import yaml

from agent_operator.api import ISSUER_SOURCE_LABEL, AgentDeployment
from agent_operator.builders import BuildOptions, desired_children
from agent_operator.operator.compare import is_subset
from localcluster import Cluster

if TYPE_CHECKING:
    from tests.e2e.conftest import ChartIdentity, OperatorProcess

pytestmark = pytest.mark.e2e

T = TypeVar("T")
LABEL = "agents.dev/agent"
CHILD_KINDS = "deployment,service,hpa,configmap,secret"


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def get(cluster: Cluster, namespace: str, *what: str) -> dict[str, Any] | None:
    result = cluster.kubectl(
        "-n", namespace, "get", *what, "-o", "json", "--show-managed-fields", check=False
    )
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def manifest(name: str = "bot", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "registry.example.com/bot:1.0",
        "resources": {"requests": {"cpu": "0.5", "memory": "128Mi"}},
        "credentials": {
            "issuer": {"type": "static", "secretRef": {"name": "upstream", "key": "apiKey"}}
        },
        "clientAuth": {"enabled": True},
        "budget": {"limits": [{"period": "day", "maxUSD": 50}]},
    }
    base.update(spec)
    return {
        "apiVersion": "agents.dev/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": {"name": name},
        "spec": base,
    }


def apply(cluster: Cluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))


def source_secret(
    cluster: Cluster, namespace: str, value: str = "sk-upstream-1", opted_in: bool = True
) -> None:
    """Secret `upstream`, created at once with (or without) the issuer-source label."""
    labels = {ISSUER_SOURCE_LABEL: "true"} if opted_in else {}
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "upstream", "labels": labels},
                "stringData": {"apiKey": value},
            }
        ),
    )


def agd(cluster: Cluster, namespace: str, name: str = "bot") -> dict[str, Any]:
    body = get(cluster, namespace, "agentdeployment", name)
    assert body is not None
    return body


def converged(cluster: Cluster, namespace: str, name: str = "bot") -> dict[str, Any] | None:
    """The AgentDeployment once status reflects its generation and every child is as rendered."""
    body = agd(cluster, namespace, name)
    status = body.get("status") or {}
    if status.get("observedGeneration") != body["metadata"]["generation"]:
        return None
    for child in desired_children(AgentDeployment.from_body(body), BuildOptions()):
        live = get(cluster, namespace, child["kind"].lower(), child["metadata"]["name"])
        if live is None or not is_subset(child, live):
            return None
    return body


def phase_ready(cluster: Cluster, namespace: str, name: str = "bot") -> dict[str, Any] | None:
    """The AgentDeployment once its status says Ready for its current generation."""
    body = agd(cluster, namespace, name)
    status = body.get("status") or {}
    if status.get("observedGeneration") != body["metadata"]["generation"]:
        return None
    return body if status.get("phase") == "Ready" else None


def children(cluster: Cluster, namespace: str) -> list[tuple[str, str]]:
    items = get(cluster, namespace, CHILD_KINDS, "-l", LABEL)
    assert items is not None
    return sorted((i["kind"], i["metadata"]["name"]) for i in items["items"])


def our_fields(body: dict[str, Any]) -> dict[str, Any]:
    """fieldsV1 of the Apply entry of manager agent-operator."""
    for entry in body["metadata"].get("managedFields") or []:
        if entry["manager"] == "agent-operator" and entry["operation"] == "Apply":
            fields: dict[str, Any] = entry["fieldsV1"]
            return fields
    raise AssertionError("no managedFields entry of agent-operator")


WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def operator_user(namespace: str) -> str:
    """Who the test's operator is: the chart's ServiceAccount (conftest's ChartIdentity,
    a release named after the namespace)."""
    return f"system:serviceaccount:{namespace}:{namespace}-agent-operator"


def operator_writes(cluster: Cluster, namespace: str, since: float) -> list[dict[str, Any]]:
    """Audit entries of write requests by the test's operator in `namespace` after `since`."""
    from datetime import datetime

    user = operator_user(namespace)
    entries = []
    # newlines only: str.splitlines also splits at U+0085, left unescaped in the log
    for line in cluster.audit_log.read_text().split("\n"):
        if f'"{user}"' not in line:
            continue
        entry = json.loads(line)
        if entry["user"]["username"] != user or entry["verb"] not in WRITES:
            continue
        if (entry.get("objectRef") or {}).get("namespace") != namespace:
            continue
        when = datetime.fromisoformat(entry["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if when.timestamp() >= since:
            entries.append(entry)
    return entries


def reconciles(process: OperatorProcess) -> float:
    """agent_operator_reconcile_total of one operator, over all results."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in process.metrics().splitlines()
        if line.startswith("agent_operator_reconcile_total{")
    )


AGD_EVENTS = "involvedObject.kind=AgentDeployment"
EXPECTED_CHILDREN = sorted(
    [
        ("ConfigMap", "bot-budget"),
        ("Deployment", "bot"),
        ("Secret", "bot-client-keys"),
        ("Secret", "bot-credentials"),
        ("Service", "bot"),
    ]
)


def test_apply_creates_children_and_status(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest())
    wait_for(lambda: converged(cluster, namespace), 30, "convergence")
    # the pod runs: the rollout completes and the phase follows
    body = wait_for(lambda: phase_ready(cluster, namespace), 60, "phase Ready")

    assert children(cluster, namespace) == EXPECTED_CHILDREN
    status = body["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("True", "Ready")
    assert conditions["Ready"]["message"] == "1 of 1 replicas ready"
    assert (conditions["Progressing"]["status"], conditions["Progressing"]["reason"]) == (
        "False",
        "RolloutComplete",
    )
    assert conditions["Degraded"]["status"] == "False"
    assert all(
        c["observedGeneration"] == body["metadata"]["generation"] for c in conditions.values()
    )
    assert status["replicas"] == 1 and status["readyReplicas"] == 1
    assert status["credentials"]["rotatedAt"] and status["clientKeys"]["rotatedAt"]
    assert "sk-upstream-1" not in json.dumps(status)

    secret = get(cluster, namespace, "secret", "bot-credentials")
    assert secret is not None
    import base64

    assert base64.b64decode(secret["data"]["current"]).decode() == "sk-upstream-1"
    client_keys = get(cluster, namespace, "secret", "bot-client-keys")
    assert client_keys is not None and len(base64.b64decode(client_keys["data"]["current"])) >= 32

    # one Event announces the creation (the children, the keys issued, the phase), one
    # the rollout's end (posted just after the status write)
    events = wait_for(
        lambda: (
            (e := get(cluster, namespace, "events", "--field-selector", AGD_EVENTS))
            and len(e["items"]) >= 2
            and e["items"]
        ),
        10,
        "the Events of the creation and the rollout's end",
    )
    created, became_ready = sorted(events, key=lambda e: e["reason"] != "Created")
    assert created["reason"] == "Created" and created["type"] == "Normal"
    for said in ("Deployment bot", "Service bot", "issued key", "phase none -> Progressing"):
        assert said in created["message"], created["message"]
    assert (became_ready["reason"], became_ready["type"]) == ("Ready", "Normal")
    assert became_ready["message"] == "phase Progressing -> Ready: 1 of 1 replicas ready"
    metrics = operator_process.metrics()
    assert 'agent_operator_reconcile_total{result="synced"}' in metrics
    assert 'agent_operator_managed_objects{kind="Deployment"} 1.0' in metrics


def test_spec_changes_are_followed_and_foreign_fields_survive(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest())
    wait_for(lambda: converged(cluster, namespace), 30, "convergence")
    client_key = get(cluster, namespace, "secret", "bot-client-keys")

    # image and budget
    apply(
        cluster,
        namespace,
        manifest(
            image="registry.example.com/bot:2.0",
            budget={"limits": [{"period": "day", "maxUSD": 7}]},
        ),
    )
    wait_for(lambda: converged(cluster, namespace), 30, "image and budget change")
    deployment = get(cluster, namespace, "deployment", "bot")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0")
    budget = get(cluster, namespace, "configmap", "bot-budget")
    assert budget is not None
    assert json.loads(budget["data"]["budget.json"])["limits"] == [{"period": "day", "maxUSD": 7}]
    # the generated client key is kept across reconciles
    assert get(cluster, namespace, "secret", "bot-client-keys")["data"] == client_key["data"]  # type: ignore[index]

    # a user label on the Deployment survives
    cluster.kubectl("-n", namespace, "label", "deployment", "bot", "team=search")

    # autoscaling on: the HPA appears and we release spec.replicas, handing the
    # live count over instead of letting the server reset it to 1
    apply(cluster, namespace, manifest(replicas=3))
    wait_for(
        lambda: (d := get(cluster, namespace, "deployment", "bot")) and d["spec"]["replicas"] == 3,
        30,
        "replicas 3",
    )
    apply(cluster, namespace, manifest(autoscaling={"minReplicas": 2, "maxReplicas": 5}))
    wait_for(lambda: converged(cluster, namespace), 30, "autoscaling on")
    deployment = wait_for(
        lambda: (
            (d := get(cluster, namespace, "deployment", "bot"))
            and "f:replicas" not in our_fields(d)["f:spec"]
            and d
        ),
        30,
        "replicas released",
    )
    assert deployment["spec"]["replicas"] == 3
    assert get(cluster, namespace, "hpa", "bot") is not None

    # an HPA-style scale is not reverted
    before = reconciles(operator_process)
    cluster.kubectl("-n", namespace, "scale", "deployment", "bot", "--replicas=4")
    wait_for(lambda: reconciles(operator_process) > before, 10, "a reconcile after the scale")
    time.sleep(1)
    deployment = get(cluster, namespace, "deployment", "bot")
    assert deployment is not None and deployment["spec"]["replicas"] == 4
    assert deployment["metadata"]["labels"]["team"] == "search"

    # autoscaling off: replicas are ours again and the HPA goes
    apply(cluster, namespace, manifest(replicas=3))
    wait_for(
        lambda: (d := get(cluster, namespace, "deployment", "bot")) and d["spec"]["replicas"] == 3,
        30,
        "replicas restored",
    )
    wait_for(lambda: get(cluster, namespace, "hpa", "bot") is None, 30, "HPA deleted")
    deployment = get(cluster, namespace, "deployment", "bot")
    assert deployment is not None
    assert "f:replicas" in our_fields(deployment)["f:spec"]
    assert deployment["metadata"]["labels"]["team"] == "search"
    wait_for(lambda: converged(cluster, namespace), 30, "autoscaling off")

    # clientAuth off: the client keys Secret goes, and so does status.clientKeys
    assert "clientKeys" in agd(cluster, namespace)["status"]
    apply(cluster, namespace, manifest(replicas=3, clientAuth={"enabled": False}))
    wait_for(
        lambda: get(cluster, namespace, "secret", "bot-client-keys") is None,
        30,
        "client keys Secret deleted",
    )
    wait_for(
        lambda: (
            converged(cluster, namespace) and "clientKeys" not in agd(cluster, namespace)["status"]
        ),
        30,
        "status.clientKeys removed",
    )
    assert "credentials" in agd(cluster, namespace)["status"]


def test_deleted_children_are_recreated(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest())
    wait_for(lambda: converged(cluster, namespace), 30, "convergence")
    for kind, name in (("service", "bot"), ("configmap", "bot-budget"), ("deployment", "bot")):
        old = get(cluster, namespace, kind, name)
        assert old is not None
        cluster.kubectl("-n", namespace, "delete", kind, name, "--wait=false")
        started = time.monotonic()
        wait_for(
            lambda k=kind, n=name, uid=old["metadata"]["uid"]: (  # type: ignore[misc]
                (o := get(cluster, namespace, k, n)) is not None and o["metadata"]["uid"] != uid
            ),
            5,
            f"{kind} {name} recreated",
            interval=0.1,
        )
        assert time.monotonic() - started < 5
    wait_for(lambda: converged(cluster, namespace), 30, "convergence")
    assert children(cluster, namespace) == EXPECTED_CHILDREN


def test_idle_operator_makes_no_writes(
    cluster: Cluster, namespace: str, make_operator: Callable[..., OperatorProcess]
) -> None:
    # A resync every 5 s: a dozen full reconciles happen while idling, and write nothing.
    operator = make_operator("operator", "--resync-seconds", "5")
    operator.start()
    source_secret(cluster, namespace)
    # An empty env value, which the API server drops: must not read as drift.
    apply(
        cluster,
        namespace,
        manifest(
            autoscaling={"minReplicas": 1, "maxReplicas": 3}, env=[{"name": "EMPTY", "value": ""}]
        ),
    )
    wait_for(lambda: converged(cluster, namespace), 30, "convergence")
    # The Deployment controller's last status change (the pod available) makes us write
    # status once more: wait for that write rather than hope a sleep covers it.
    wait_for(lambda: phase_ready(cluster, namespace), 60, "the rollout's final status mirrored")
    time.sleep(5)  # let the Deployment and HPA controllers settle their status writes
    assert operator_writes(cluster, namespace, time.time() - 600), "audit log sees our writes"
    since, before = time.time(), reconciles(operator)
    time.sleep(60)
    writes = operator_writes(cluster, namespace, since)
    assert writes == [], [(w["verb"], w["requestURI"]) for w in writes]
    assert reconciles(operator) - before >= 10, "resyncs ran while idling"
    assert operator.proc is not None and operator.proc.poll() is None


def progressing_message(body: dict[str, Any]) -> str | None:
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Progressing":
            message: str = cond["message"]
            return message
    return None


def wait_for_first_write(cluster: Cluster, namespace: str, timeout: float) -> None:
    """Block until the audit log shows the operator's first write in `namespace` (fast polling)."""
    deadline = time.monotonic() + timeout
    with cluster.audit_log.open() as log:
        log.seek(0, 2)
        while time.monotonic() < deadline:
            line = log.readline()
            if not line:
                time.sleep(0.002)
                continue
            ours = f'"{operator_user(namespace)}"' in line and f'"namespace":"{namespace}"' in line
            if ours and json.loads(line)["verb"] in WRITES:
                return
    raise AssertionError("the operator wrote nothing")


def test_kill9_mid_reconcile_then_restart_converges(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    source_secret(cluster, namespace)
    names = [f"bot-{i}" for i in range(6)]
    cluster.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump_all([manifest(name) for name in names]),
    )
    wait_for_first_write(cluster, namespace, 30)
    operator_process.kill()  # mid-reconcile: 6 objects x 5 children are being written
    written = len(children(cluster, namespace))
    assert written < 6 * 5, "the kill came too late to interrupt anything"

    operator_process.start()
    for name in names:
        wait_for(lambda n=name: converged(cluster, namespace, n), 30, f"{name} converged")  # type: ignore[misc]
    expected = sorted(
        (kind, child.replace("bot", name, 1)) for name in names for kind, child in EXPECTED_CHILDREN
    )
    assert children(cluster, namespace) == expected
    replicasets = get(cluster, namespace, "replicaset", "-l", LABEL)  # not the chart's own
    assert replicasets is not None and len(replicasets["items"]) == len(names)
    for name in names:
        body = wait_for(lambda n=name: phase_ready(cluster, namespace, n), 60, f"{name} Ready")  # type: ignore[misc]
        assert body["status"]["observedGeneration"] == 1


def test_operator_survives_apiserver_restart(
    cluster: Cluster,
    namespace: str,
    operator_process: OperatorProcess,
    chart_identity: ChartIdentity,
) -> None:
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest())
    wait_for(lambda: converged(cluster, namespace), 30, "convergence")
    cluster.restart_apiserver()
    chart_identity.not_before(time.time())
    apply(cluster, namespace, manifest(image="registry.example.com/bot:after-restart"))
    wait_for(lambda: converged(cluster, namespace), 90, "convergence after apiserver restart")
    deployment = get(cluster, namespace, "deployment", "bot")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        ":after-restart"
    )
    assert operator_process.proc is not None and operator_process.proc.poll() is None


def test_missing_source_secret_is_degraded_then_recovers(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    apply(cluster, namespace, manifest())
    body = wait_for(
        lambda: (b := agd(cluster, namespace)).get("status", {}).get("phase") == "Degraded" and b,
        30,
        "Degraded",
    )
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "CredentialsSecretMissing"
    assert "upstream" in ready["message"] and "apiKey" in ready["message"]
    assert "Traceback" not in json.dumps(body["status"])
    # Each change of a child (the Deployment controller's status writes, seconds late
    # on a loaded machine) rightly triggers a reconcile; let those pass first, so the
    # window below counts the timer's retries alone. The pods run meanwhile: only the
    # credentials Secret is missing, and the simulated node does not mount it.
    wait_for(
        lambda: (
            (b := agd(cluster, namespace))["status"].get("readyReplicas") == 1
            and progressing_message(b) == "1 of 1 replicas ready"
        ),
        30,
        "the Deployment's status mirrored",
    )
    # retried with backoff (1 s, 2 s, 4 s, ...), not in a hot loop
    time.sleep(2)
    before = reconciles(operator_process)
    time.sleep(6)
    assert reconciles(operator_process) - before <= 3
    # everything but the credentials Secret is there meanwhile
    assert get(cluster, namespace, "deployment", "bot") is not None
    assert get(cluster, namespace, "secret", "bot-credentials") is None
    source_secret(cluster, namespace)
    wait_for(lambda: converged(cluster, namespace), 30, "recovery (retry with backoff)")
    wait_for(lambda: phase_ready(cluster, namespace), 30, "phase Ready")
    events = get(
        cluster, namespace, "events", "--field-selector", "reason=CredentialsSecretMissing"
    )
    assert events is not None and len(events["items"]) == 1  # announced once, not per retry


def test_delete_removes_children_by_garbage_collection(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest(autoscaling={"minReplicas": 1, "maxReplicas": 3}))
    wait_for(lambda: converged(cluster, namespace), 30, "convergence")
    assert agd(cluster, namespace)["metadata"].get("finalizers") is None
    cluster.kubectl("-n", namespace, "delete", "agentdeployment", "bot", "--wait=false")
    wait_for(lambda: children(cluster, namespace) == [], 60, "children garbage-collected")


def test_of_two_peered_replicas_only_one_acts(
    cluster: Cluster,
    namespace: str,
    peering_crds: None,
    make_operator: Callable[..., OperatorProcess],
) -> None:
    cluster.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "KopfPeering",
                "metadata": {"name": "agent-operator"},
            }
        ),
    )
    # low resyncs every second: its timers must stay quiet while it is paused
    low = make_operator(
        "low", "--peering", "agent-operator", "--priority", "50", "--resync-seconds", "1"
    )
    high = make_operator("high", "--peering", "agent-operator", "--priority", "100")
    low.start()
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest())
    wait_for(lambda: converged(cluster, namespace), 30, "convergence by the first replica")
    assert "created Deployment bot" in low.logs()

    high.start()
    wait_for(lambda: "Pausing operations in favour of" in low.logs(), 30, "low pauses")
    # The peering gate caches its answer for 2 s; a reconcile it let through just
    # before may still be running (slowly, on a loaded machine).
    time.sleep(4)
    before = reconciles(low)
    time.sleep(4)
    assert reconciles(low) == before, "a paused replica reconciled on a timer"
    assert reconciles(high) >= 1
    apply(cluster, namespace, manifest(image="registry.example.com/bot:2.0"))
    wait_for(lambda: converged(cluster, namespace), 30, "change handled by the active replica")
    assert "updated Deployment bot" in high.logs()
    assert "updated " not in low.logs()

    high.stop()  # a graceful exit leaves the peering at once
    wait_for(
        lambda: "Resuming operations" in low.logs().split("Pausing operations")[-1],
        30,
        "low resumes",
    )
    apply(cluster, namespace, manifest(image="registry.example.com/bot:3.0"))
    wait_for(lambda: converged(cluster, namespace), 30, "takeover by the other replica")
    assert "updated Deployment bot" in low.logs()
