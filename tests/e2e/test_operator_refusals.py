"""What the operator refuses to do, and says so: on the real control plane.

It never adopts or overwrites an object it does not control, copies keys
only from Secrets that opted in, and reports a child the API server refuses;
each as Ready=False with a reason, a message naming the object, one Warning
Event, and convergence once the cause is gone. Operators here retry with a
short backoff cap, so the tests wait seconds, not minutes.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from tests.e2e.test_operator import (
    agd,
    apply,
    converged,
    get,
    manifest,
    operator_writes,
    reconciles,
    source_secret,
    wait_for,
)

from agent_operator.api import ISSUER_SOURCE_LABEL
from localcluster import Cluster

if TYPE_CHECKING:
    from tests.e2e.conftest import OperatorProcess

pytestmark = pytest.mark.e2e


def ready_condition(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == "Ready")


def failing_with(cluster: Cluster, namespace: str, reason: str) -> dict[str, Any] | None:
    """The AgentDeployment once its current generation reports Ready=False with `reason`."""
    body = agd(cluster, namespace)
    status = body.get("status") or {}
    if status.get("observedGeneration") != body["metadata"]["generation"]:
        return None
    ready = ready_condition(body)
    return body if ready["status"] == "False" and ready["reason"] == reason else None


def warnings(cluster: Cluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    events = get(
        cluster,
        namespace,
        "events",
        "--field-selector",
        f"involvedObject.kind=AgentDeployment,reason={reason}",
    )
    assert events is not None
    return [e for e in events["items"] if e["type"] == "Warning"]


def controlled_by_agd(child: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(
        r["uid"] == owner["metadata"]["uid"] and r.get("controller")
        for r in child["metadata"].get("ownerReferences") or []
    )


def secret_value(cluster: Cluster, namespace: str, name: str, key: str) -> str | None:
    secret = get(cluster, namespace, "secret", name)
    if secret is None or key not in (secret.get("data") or {}):
        return None
    return base64.b64decode(secret["data"][key]).decode()


@pytest.fixture
def quick_operator(make_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    """Retries at most 1 s apart and re-checks every 2 s (the source Secret is not watched)."""
    operator = make_operator("operator", "--backoff-max-seconds", "1", "--resync-seconds", "2")
    operator.start()
    return operator


FOREIGN = [
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "bot", "labels": {"team": "someone-else"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80, "targetPort": 8080}]},
    },
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "bot-credentials"},
        "stringData": {"current": "their-own-value"},
    },
]


def test_objects_it_does_not_control_are_left_alone(
    cluster: Cluster, namespace: str, quick_operator: OperatorProcess
) -> None:
    for body in FOREIGN:
        cluster.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(body))
    before = {
        b["kind"]: get(cluster, namespace, b["kind"].lower(), b["metadata"]["name"])
        for b in FOREIGN
    }
    source_secret(cluster, namespace)
    since = time.time()
    apply(cluster, namespace, manifest())

    body = wait_for(
        lambda: failing_with(cluster, namespace, "ChildConflict"), 30, "Ready=False ChildConflict"
    )
    message = ready_condition(body)["message"]
    assert "Service bot" in message and "Secret bot-credentials" in message, message
    assert "delete or rename" in message
    assert body["status"]["phase"] == "Degraded"
    # the other children are there, ours
    for kind, name in (
        ("configmap", "bot-budget"),
        ("secret", "bot-client-keys"),
        ("deployment", "bot"),
    ):
        child = wait_for(partial(get, cluster, namespace, kind, name), 30, f"{kind} {name}")
        assert controlled_by_agd(child, body)
    time.sleep(3)  # several retries (1 s apart) find the conflict again
    for kind, old in before.items():
        assert old is not None
        now = get(cluster, namespace, kind.lower(), old["metadata"]["name"])
        assert now == old, f"the foreign {kind} was changed"
        assert "ownerReferences" not in now["metadata"]
    touched = [
        w["objectRef"]
        for w in operator_writes(cluster, namespace, since)
        if (w["objectRef"].get("resource"), w["objectRef"].get("name"))
        in (("services", "bot"), ("secrets", "bot-credentials"))
    ]
    assert touched == []
    assert "their-own-value" not in quick_operator.logs()
    assert len(warnings(cluster, namespace, "ChildConflict")) == 1  # announced once

    for b in FOREIGN:
        cluster.kubectl("-n", namespace, "delete", b["kind"].lower(), b["metadata"]["name"])
    wait_for(lambda: converged(cluster, namespace), 30, "convergence once they are gone")
    body = wait_for(
        lambda: (b := agd(cluster, namespace))["status"]["phase"] == "Ready" and b,
        30,
        "phase Ready",
    )
    for kind, name in (("service", "bot"), ("secret", "bot-credentials")):
        child = get(cluster, namespace, kind, name)
        assert child is not None and controlled_by_agd(child, body)
    assert secret_value(cluster, namespace, "bot-credentials", "current") == "sk-upstream-1"


def test_keys_are_copied_only_from_secrets_that_opted_in(
    cluster: Cluster, namespace: str, quick_operator: OperatorProcess
) -> None:
    source_secret(cluster, namespace, value="sk-not-for-you", opted_in=False)
    apply(cluster, namespace, manifest())

    body = wait_for(
        lambda: failing_with(cluster, namespace, "CredentialsSourceNotOptedIn"),
        30,
        "Ready=False CredentialsSourceNotOptedIn",
    )
    message = ready_condition(body)["message"]
    assert "'upstream'" in message and f"{ISSUER_SOURCE_LABEL}=true" in message, message
    assert warnings(cluster, namespace, "CredentialsSourceNotOptedIn")
    time.sleep(3)  # retried meanwhile, never copied
    assert get(cluster, namespace, "secret", "bot-credentials") is None
    assert "sk-not-for-you" not in json.dumps(agd(cluster, namespace))
    assert "sk-not-for-you" not in quick_operator.logs()
    assert get(cluster, namespace, "deployment", "bot") is not None  # the rest goes ahead

    cluster.kubectl("-n", namespace, "label", "secret", "upstream", f"{ISSUER_SOURCE_LABEL}=true")
    wait_for(lambda: converged(cluster, namespace), 30, "convergence once labelled")
    assert secret_value(cluster, namespace, "bot-credentials", "current") == "sk-not-for-you"

    # A key no provider issues (17 KiB) is not copied; the working one stays.
    huge = "k" * (17 * 1024)
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "secret",
        "upstream",
        "-p",
        json.dumps({"stringData": {"apiKey": huge}}),
    )

    # A working key is in place, so Ready is not affected: CredentialsReady says it.
    def credentials_failing() -> dict[str, Any] | None:
        body = agd(cluster, namespace)
        for cond in body.get("status", {}).get("conditions") or []:
            if cond["type"] == "CredentialsReady" and cond["reason"] == "CredentialsKeyInvalid":
                return cond
        return None

    cond = wait_for(credentials_failing, 30, "CredentialsReady=False CredentialsKeyInvalid")
    assert cond["status"] == "False" and "'apiKey'" in cond["message"]
    assert secret_value(cluster, namespace, "bot-credentials", "current") == "sk-not-for-you"
    assert warnings(cluster, namespace, "CredentialsKeyInvalid")


def test_a_child_refused_by_a_quota_is_reported_then_created(
    cluster: Cluster, namespace: str, quick_operator: OperatorProcess
) -> None:
    cluster.kubectl("-n", namespace, "create", "quota", "no-services", "--hard=services=0")
    # Admission refuses everything the quota covers until its controller has counted.
    wait_for(
        lambda: (
            (get(cluster, namespace, "resourcequota", "no-services") or {})
            .get("status", {})
            .get("used")
        ),
        30,
        "quota counted",
    )
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest())

    body = wait_for(
        lambda: failing_with(cluster, namespace, "ChildRejected"), 30, "Ready=False ChildRejected"
    )
    message = ready_condition(body)["message"]
    assert "Service bot" in message and "exceeded quota" in message, message
    assert "Traceback" not in json.dumps(body["status"])
    assert [e["message"] for e in warnings(cluster, namespace, "ChildRejected")] == [message]
    assert get(cluster, namespace, "service", "bot") is None
    assert get(cluster, namespace, "deployment", "bot") is not None

    cluster.kubectl("-n", namespace, "delete", "quota", "no-services")
    wait_for(lambda: converged(cluster, namespace), 30, "convergence once the quota is gone")


def test_an_invalid_child_waits_for_a_spec_change(
    cluster: Cluster, namespace: str, make_operator: Callable[..., OperatorProcess]
) -> None:
    operator = make_operator("operator", "--backoff-max-seconds", "1")  # resync: 600 s
    operator.start()
    source_secret(cluster, namespace)
    # The schema passes valueFrom through; the Deployment's validation refuses it.
    bad_env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "elsewhere"}}}]
    apply(cluster, namespace, manifest(env=bad_env))

    body = wait_for(
        lambda: failing_with(cluster, namespace, "ChildRejected"), 30, "Ready=False ChildRejected"
    )
    message = ready_condition(body)["message"]
    assert "Deployment bot (422)" in message and "secretKeyRef.key" in message, message
    # Not retried on a timer (retries would come every second here): once the
    # events of its own writes have passed, nothing reconciles it.
    time.sleep(2)
    before = reconciles(operator)
    time.sleep(4)
    assert reconciles(operator) - before <= 1
    assert get(cluster, namespace, "deployment", "bot") is None

    apply(cluster, namespace, manifest())
    wait_for(lambda: converged(cluster, namespace), 30, "convergence after the fix")
