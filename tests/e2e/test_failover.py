"""Active/standby on the real control plane: two peered operator processes.

The gauge agent_operator_peering_active of both is sampled every 0.2 s for
the whole test: never are both 1 at once. A kill -9 of the active replica
must be followed, within FAILOVER_SECONDS, by the standby reconciling a
change made after the kill.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes import client
from tests.e2e.test_operator import apply, converged, manifest, source_secret, wait_for

from localcluster import Cluster

if TYPE_CHECKING:
    from tests.e2e.conftest import OperatorProcess

pytestmark = pytest.mark.e2e

PEERING = "agent-operator"
FAILOVER_SECONDS = 15.0  # issue 17: kill -9 of the active replica to the change reconciled
GAUGE = "agent_operator_peering_active"


def peering_object(cluster: Cluster, namespace: str) -> None:
    body = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))


def gauge(process: OperatorProcess) -> float | None:
    """The peering gauge of a process; None when it does not answer (not started, killed)."""
    if process.proc is None or process.proc.poll() is not None:
        return None
    url = f"http://127.0.0.1:{process.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(GAUGE + " "):
            return float(line.split()[1])
    return None


class Sampler:
    """Samples the gauge of every process every 0.2 s in a thread."""

    def __init__(self, *processes: OperatorProcess) -> None:
        self.processes = processes
        self.samples: list[tuple[float, tuple[float | None, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), tuple(gauge(p) for p in self.processes)))
            self._stop.wait(0.2)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def latest(self) -> tuple[float | None, ...]:
        return self.samples[-1][1] if self.samples else ()

    def both_active(self) -> list[float]:
        """Times at which more than one process said it was active."""
        return [t for t, values in self.samples if sum(v == 1 for v in values) > 1]

    def first_active(self, index: int, after: float) -> float | None:
        return next((t for t, values in self.samples if t >= after and values[index] == 1), None)


@pytest.fixture
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


def image(apps: client.AppsV1Api, namespace: str) -> str | None:
    try:
        deployment: Any = apps.read_namespaced_deployment("bot", namespace)
    except client.ApiException:
        return None
    return str(deployment.spec.template.spec.containers[0].image)


def test_kill_9_of_the_active_replica_fails_over_to_the_standby(
    cluster: Cluster,
    namespace: str,
    peering_crds: None,
    make_operator: Callable[..., OperatorProcess],
    apps: client.AppsV1Api,
) -> None:
    peering_object(cluster, namespace)
    # --priority auto is the default with --peering: the earlier started replica leads
    first = make_operator("first", "--peering", PEERING)
    second = make_operator("second", "--peering", PEERING)
    first.start()
    with Sampler(first, second) as sampler:
        source_secret(cluster, namespace)
        apply(cluster, namespace, manifest())
        wait_for(lambda: converged(cluster, namespace), 30, "convergence by the first replica")
        second.start()
        wait_for(
            lambda: "standing by" in second.readyz()[1] and first.readyz()[0] == 200,
            30,
            "second ready as standby, first ready as active",
        )
        assert second.readyz() == (200, f"ready: standing by for {identity(first)}")
        assert first.readyz() == (200, "ready: active")
        wait_for(lambda: sampler.latest() == (1.0, 0.0), 10, "gauges: first 1, second 0")

        killed = time.monotonic()
        first.kill()
        apply(cluster, namespace, manifest(image="registry.example.com/bot:2.0"))
        changed = time.monotonic() - killed
        wait_for(
            lambda: image(apps, namespace) == "registry.example.com/bot:2.0",
            FAILOVER_SECONDS + 15,
            "the standby to reconcile the change",
            interval=0.1,
        )
        failover = time.monotonic() - killed
        wait_for(lambda: converged(cluster, namespace), 30, "convergence by the second replica")
    took_over = sampler.first_active(1, after=killed)
    print(
        f"\nfailover: change applied {changed:.1f}s after the kill, standby active after "
        f"{(took_over or 0) - killed:.1f}s, change reconciled {failover:.1f}s after the kill"
    )
    assert failover <= FAILOVER_SECONDS, f"failover took {failover:.1f}s"
    assert took_over is not None
    assert "updated Deployment bot" in second.logs()
    assert sampler.both_active() == [], "both replicas active at once"
    assert second.readyz() == (200, "ready: active")


def identity(process: OperatorProcess) -> str:
    """The peering identity a process logged at start."""
    for line in process.logs().splitlines():
        if "identity=" in line:
            return line.split("identity=", 1)[1].split()[0].strip('",')
    raise AssertionError("no identity in the log")


def test_replicas_of_equal_priority_do_not_both_freeze(
    cluster: Cluster,
    namespace: str,
    peering_crds: None,
    make_operator: Callable[..., OperatorProcess],
) -> None:
    peering_object(cluster, namespace)
    one = make_operator("one", "--peering", PEERING, "--priority", "7")
    two = make_operator("two", "--peering", PEERING, "--priority", "7")
    with Sampler(one, two) as sampler:
        one.start()
        two.start()
        wait_for(
            lambda: sorted(sampler.latest(), key=str) == [0.0, 1.0],
            30,
            "one replica active, the other standing by",
        )
        source_secret(cluster, namespace)
        apply(cluster, namespace, manifest())
        wait_for(lambda: converged(cluster, namespace), 30, "convergence by the active one")
        time.sleep(3)  # a few more samples: the tie stays broken
    assert sampler.both_active() == [], "both replicas active at once"
    assert sorted(sampler.latest(), key=str) == [0.0, 1.0]
    assert "going to 6" in one.logs() + two.logs()


def test_not_ready_while_the_peering_object_is_missing(
    cluster: Cluster,
    namespace: str,
    peering_crds: None,
    make_operator: Callable[..., OperatorProcess],
) -> None:
    alone = make_operator("alone", "--peering", PEERING)
    alone.start()
    missing = f"KopfPeering {namespace}/{PEERING} not found"
    wait_for(lambda: missing in alone.readyz()[1], 10, "/readyz naming the missing object")
    time.sleep(2)  # it stays so
    status, text = alone.readyz()
    assert status == 503 and text.startswith("not ready: ") and missing in text
    assert gauge(alone) == 0
    peering_object(cluster, namespace)
    wait_for(lambda: alone.readyz() == (200, "ready: active"), 30, "/readyz 200 once it exists")
    assert gauge(alone) == 1
