"""Faults on the real control plane: the operator converges through them (issue 18).

Each test applies a fleet of AgentDeployments, breaks something while the
operator reconciles them, and then expects every one converged (status at
its generation, every child as rendered), no AgentDeployment with a child
it should not have (the children carrying its `agents.dev/agent` label are
exactly the rendered set, one ReplicaSet per Deployment) and, for issued
keys, one key lineage per Secret: the key id a Secret was first seen with
is the one it ends with, no `previous` or staged key, and every "issued
key" Event names that id (a second mint would show as a new id, or as an
Event naming a key the Secret does not hold).

The faults: the API server killed with SIGKILL and started again, etcd
killed and started again, the operator killed with `kill -9` every few
seconds, and, through tests/fakes/tcpproxy.py between the operator and the
API server, delayed, reset and refused connections and silently dead watch
streams.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes import client, config
from tests.e2e.test_operator import (
    LABEL,
    apply,
    converged,
    manifest,
    operator_user,
    source_secret,
    wait_for,
)
from tests.fakes.tcpproxy import TcpProxy

from agent_operator.api import AgentDeployment
from agent_operator.builders import BuildOptions, desired_children
from agent_operator.operator.compare import is_subset
from agent_operator.operator.kube import KINDS, Kube
from agent_operator.operator.rotation import (
    KEY_ID,
    NEXT_KEY_ID,
    PREVIOUS_KEY_ID,
    ROTATION_STATE,
)
from localcluster import Cluster

if TYPE_CHECKING:
    from tests.e2e.conftest import ChartIdentity, OperatorProcess

pytestmark = pytest.mark.e2e

FLEET = 100
PROXIED_FLEET = 40
CONVERGE_SECONDS = 180.0  # a fleet of 100 on a loaded 2-core machine, after the fault
CHILD_KINDS = (
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
)
GENERATED = {"issuer": {"type": "generated"}}
# A key a reconcile has issued, as its Event says ("Created" or "KeyIssued").
ISSUED = re.compile(r"issued key (\S+?) into Secret ([a-z0-9.-]+)")
# Retries of a key that failed through a fault come at most this far apart: a
# fault of ~20 s is followed by convergence within seconds, not minutes.
BACKOFF = ("--backoff-max-seconds", "10")
# The operator's settings that bound how soon a silently dead watch is noticed.
WATCH_TIMEOUT = 5  # --watch-timeout-seconds
CLIENT_TIMEOUT = WATCH_TIMEOUT + 60  # kopf's client timeout of a watch (handlers.py)
REQUEST_TIMEOUT = 30  # the reconcile's per-request timeout (operator/kube.py TIMEOUT)
RESYNC = 15  # --resync-seconds of the watch test: its resyncs find dead pooled connections


# --- the fleet --------------------------------------------------------------------------


def names(count: int) -> list[str]:
    return [f"a-{i:03d}" for i in range(count)]


def mixed_fleet(count: int) -> list[dict[str, Any]]:
    """Half with autoscaling, a budget, client auth and a static source key; half
    minimal: an image and a generated key."""
    bodies = []
    for i, name in enumerate(names(count)):
        if i % 2 == 0:
            bodies.append(manifest(name, autoscaling={"minReplicas": 1, "maxReplicas": 3}))
        else:
            body = manifest(name)
            body["spec"] = {"image": "registry.example.com/bot:1.0", "credentials": GENERATED}
            bodies.append(body)
    return bodies


def generated_fleet(count: int) -> list[dict[str, Any]]:
    """Every key generated (both Secrets minted by the operator), half autoscaled."""
    return [
        manifest(name, credentials=GENERATED, clientAuth={"enabled": True})
        if i % 2
        else manifest(
            name,
            credentials=GENERATED,
            clientAuth={"enabled": True},
            autoscaling={"minReplicas": 1, "maxReplicas": 3},
        )
        for i, name in enumerate(names(count))
    ]


def apply_all(cluster: Cluster, namespace: str, bodies: list[dict[str, Any]]) -> None:
    """One `kubectl apply -f` of a multi-document YAML, as the admin."""
    cluster.kubectl(
        "-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(bodies), timeout=180
    )


# --- what the API server holds ----------------------------------------------------------


@dataclass
class World:
    """One namespace's AgentDeployments and every object labelled as one's child."""

    agents: dict[str, dict[str, Any]]
    children: dict[tuple[str, str], dict[str, Any]]  # (kind, name) -> body

    def expected(self, name: str) -> dict[tuple[str, str], dict[str, Any]]:
        agd = AgentDeployment.from_body(self.agents[name])
        return {
            (child["kind"], child["metadata"]["name"]): child
            for child in desired_children(agd, BuildOptions())
        }

    def behind(self, name: str) -> str | None:
        """Why one AgentDeployment has not converged (None: it has)."""
        body = self.agents[name]
        observed = (body.get("status") or {}).get("observedGeneration")
        if observed != body["metadata"]["generation"]:
            return f"{name}: observedGeneration {observed}"
        for ref, child in self.expected(name).items():
            live = self.children.get(ref)
            if live is None or not is_subset(child, live):
                return f"{name}: {ref} {'missing' if live is None else 'differs'}"
        return None

    def unconverged(self) -> list[str]:
        """Why each AgentDeployment that has not converged has not."""
        return [why for name in sorted(self.agents) if (why := self.behind(name))]

    def strays(self) -> dict[str, list[tuple[str, str]]]:
        """Per AgentDeployment, its labelled children beyond the rendered set (and those
        whose label names no AgentDeployment, under that name)."""
        found: dict[str, set[tuple[str, str]]] = {}
        for ref, body in self.children.items():
            found.setdefault(body["metadata"]["labels"][LABEL], set()).add(ref)
        out = {}
        for owner, refs in found.items():
            extra = refs - set(self.expected(owner)) if owner in self.agents else refs
            if extra:
                out[owner] = sorted(extra)
        return out


def listed(kube: Kube, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    """The objects of `kind`, each with its kind and apiVersion (a list's items lack them)."""
    items = kube.list_objects(kind, namespace, selector)
    for item in items:
        item.update(kind=kind, apiVersion=KINDS[kind].api_version)
    return items


def world(kube: Kube, namespace: str) -> World:
    agents = {b["metadata"]["name"]: b for b in listed(kube, "AgentDeployment", namespace)}
    children = {
        (kind, body["metadata"]["name"]): body
        for kind in CHILD_KINDS
        for body in listed(kube, kind, namespace, LABEL)
    }
    return World(agents, children)


def all_converge(kube: Kube, namespace: str, count: int, timeout: float) -> World:
    """Wait until `count` AgentDeployments exist and every one has converged."""
    last: list[World] = []

    def done() -> bool:
        try:
            seen = world(kube, namespace)
        except Exception:  # the API server may still be coming back
            return False
        last[:] = [seen]
        return len(seen.agents) == count and not seen.unconverged()

    try:
        wait_for(done, timeout, f"all {count} AgentDeployments converged", interval=2)
    except AssertionError:
        behind = last[0].unconverged() if last else ["(no answer)"]
        raise AssertionError(
            f"not converged after {timeout}s: {len(behind)} behind: {behind[:5]}"
        ) from None
    return last[0]


def assert_no_duplicates(apps: client.AppsV1Api, seen: World, namespace: str) -> None:
    """Each AgentDeployment's labelled children are exactly its rendered ones, and its
    Deployment has one ReplicaSet (its pod template was never applied twice)."""
    assert seen.strays() == {}
    for name in seen.agents:
        assert set(seen.expected(name)) <= set(seen.children), name

    def replica_sets() -> Counter[str]:
        items: list[Any] = apps.list_namespaced_replica_set(namespace, label_selector=LABEL).items
        return Counter(rs.metadata.owner_references[0].name for rs in items)

    # the Deployment controller, restarted or starved too, may still be catching up
    wait_for(
        lambda: replica_sets().keys() == seen.agents.keys(),
        60,
        "a ReplicaSet for every Deployment",
        interval=1,
    )
    assert {k: v for k, v in replica_sets().items() if v != 1} == {}


def audit_entries(cluster: Cluster, namespace: str, since: float, marker: bytes) -> list[Any]:
    """Audit entries of the test's operator received from `since` on (wall clock) whose
    line holds `marker`, from the audit log and the files it was rotated into (the API
    server rotates it at 100 MB: a busy suite does so mid-test)."""
    user = f'"{operator_user(namespace)}"'.encode()
    entries = []
    for path in [*sorted(cluster.logs.glob("audit-*.log")), cluster.audit_log]:
        if path.stat().st_mtime < since:
            continue  # rotated away before `since`
        with path.open("rb") as log:
            for line in log:
                if user not in line or marker not in line or not line.endswith(b"\n"):
                    continue
                entry = json.loads(line)
                received = entry["requestReceivedTimestamp"].replace("Z", "+00:00")
                entry["received"] = datetime.fromisoformat(received).timestamp()
                ref = entry.get("objectRef") or {}
                if entry["received"] >= since and ref.get("namespace") == namespace:
                    entries.append(entry)
    return entries


def statuses_written(cluster: Cluster, namespace: str, since: float, *until: float) -> list[int]:
    """For each time of `until`: how many AgentDeployments the operator had written the
    status of, from `since` on (fewer than the fleet: the fault came mid-reconcile)."""
    writes = [
        (entry["received"], entry["objectRef"]["name"])
        for entry in audit_entries(cluster, namespace, since, b'"subresource":"status"')
        if entry["verb"] == "patch"
    ]
    return [len({name for when, name in writes if when < end}) for end in until]


def wait_for_status_writes(cluster: Cluster, namespace: str, count: int, timeout: float) -> None:
    """Block until the audit log shows the operator's status writes for `count`
    AgentDeployments (read as they come: a fault is to meet a reconcile in full swing)."""
    user = f'"{operator_user(namespace)}"'.encode()
    written: set[str] = set()
    deadline = time.monotonic() + timeout
    log = cluster.audit_log.open("rb")
    log.seek(0, 2)
    try:
        while time.monotonic() < deadline:
            line = log.readline()
            if not line.endswith(b"\n"):  # nothing new, or a line still being written
                log.seek(-len(line), 1)
                with contextlib.suppress(FileNotFoundError):  # mid-rotation
                    if os.fstat(log.fileno()).st_ino != cluster.audit_log.stat().st_ino:
                        rotated, log = log, cluster.audit_log.open("rb")
                        rotated.close()  # read to its end: the new file follows it
                time.sleep(0.01)
                continue
            if user not in line or b'"subresource":"status"' not in line:
                continue
            entry = json.loads(line)
            ref = entry.get("objectRef") or {}
            if entry["verb"] == "patch" and ref.get("namespace") == namespace:
                written.add(entry["objectRef"]["name"])
                if len(written) >= count:
                    return
    finally:
        log.close()
    raise AssertionError(f"the operator wrote the status of {len(written)} in {timeout}s")


# --- key lineage -------------------------------------------------------------------------


class KeyIds:
    """Samples the key id of every key Secret of a namespace, about twice a second, in a
    thread, with a client of its own: every id each Secret was seen holding, in order."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.namespace = namespace
        self.seen: dict[str, list[str]] = {}
        api_client: Any = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        self._api = client.CoreV1Api(api_client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="key-ids", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            secrets: Any = []
            # the API server may be down or restarting: then sample again later
            with contextlib.suppress(Exception):
                secrets = self._api.list_namespaced_secret(
                    self.namespace, label_selector=LABEL, _request_timeout=5
                ).items
            for secret in secrets:
                key_id = (secret.metadata.annotations or {}).get(KEY_ID)
                ids = self.seen.setdefault(secret.metadata.name, [])
                if key_id and (not ids or ids[-1] != key_id):
                    ids.append(key_id)
            self._stop.wait(0.5)

    def __enter__(self) -> KeyIds:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def assert_one_key_lineage(core: client.CoreV1Api, seen: World, ids: KeyIds) -> int:
    """Every key Secret the operator minted into holds one key, the one it was first
    seen with, and every Event about an issued key names that key. Returns how many
    Secrets were checked (a static source's copy is no mint: not counted)."""
    final: dict[str, str] = {}
    for name, agd in seen.agents.items():
        static = agd["spec"]["credentials"]["issuer"]["type"] == "static"
        for kind, secret in seen.expected(name):
            if kind != "Secret" or (static and secret == f"{name}-credentials"):
                continue
            body = seen.children[(kind, secret)]
            notes = body["metadata"].get("annotations") or {}
            assert notes.get(KEY_ID), f"{secret}: no key id"
            lost = {PREVIOUS_KEY_ID, NEXT_KEY_ID, ROTATION_STATE} & set(notes)
            assert not lost, f"{secret}: a second mint left {sorted(lost)}"
            assert set(body.get("data") or {}) == {"current"}, f"{secret}: {sorted(body['data'])}"
            final[secret] = notes[KEY_ID]
    for secret, key_id in final.items():
        history = ids.seen.get(secret, [])
        assert set(history) <= {key_id}, f"{secret} held keys {history}, ends with {key_id}"
    events = core.list_namespaced_event(ids.namespace).items
    messages = [e.message or "" for e in events]
    issued = [(m.group(2), m.group(1)) for text in messages for m in ISSUED.finditer(text)]
    for secret, key_id in issued:
        if secret in final:
            assert final[secret] == key_id, f"{secret}: an Event issued {key_id}"
    rotated = [t for t in messages if "rotated Secret" in t or "staged key" in t]
    assert not rotated, f"a key was rotated: {rotated[:3]}"
    return len(final)


def rbac_synced(cluster: Cluster, namespace: str, identity: ChartIdentity) -> None:
    """Wait until a restarted API server grants the chart's identity what the chart
    grants; count its refusals from then on only (before, it refuses everyone)."""
    wait_for(
        lambda: (
            cluster.kubectl(
                "auth",
                "can-i",
                "patch",
                "configmaps",
                "-n",
                namespace,
                "--as",
                identity.user,
                check=False,
            ).stdout.strip()
            == "yes"
        ),
        60,
        "RBAC synced after the restart",
    )
    identity.not_before(time.time())


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def kube(api_client: client.ApiClient) -> Kube:
    """The admin's raw JSON client (the operator's own thin client, used here to read)."""
    return Kube(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def release_service_ips(core: client.CoreV1Api, namespace: str) -> Iterator[None]:
    """Delete the fleet's Services at the end, once the test's operators are stopped
    (request this before make_operator): the local control plane's Services share a
    /24, which a few fleets of 100 left to a slow namespace deletion would use up."""
    yield
    core.delete_collection_namespaced_service(namespace, label_selector=LABEL)


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the API server (request it before make_operator, so that
    it outlives the operators)."""
    server = urllib.parse.urlsplit(cluster.server())
    assert server.hostname is not None and server.port is not None
    with TcpProxy(server.hostname, server.port) as running:
        yield running


def proxied_kubeconfig(source: Path, proxy: TcpProxy) -> Path:
    """A copy of `source` whose server is the proxy (same host: the API server's
    certificate is for 127.0.0.1)."""
    kubeconfig = yaml.safe_load(source.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = proxy.url
    path = source.with_name("proxied.kubeconfig")
    path.write_text(json.dumps(kubeconfig))
    path.chmod(0o600)
    return path


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["kube-apiserver", "etcd"])
def test_control_plane_killed_mid_reconcile_of_100_all_converge_without_duplicates(
    fault: str,
    cluster: Cluster,
    namespace: str,
    release_service_ips: None,
    make_operator: Callable[..., OperatorProcess],
    chart_identity: ChartIdentity,
    kube: Kube,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    source_secret(cluster, namespace)
    apply_all(cluster, namespace, mixed_fleet(FLEET))
    operator = make_operator("operator", *BACKOFF)
    started = time.time()
    with KeyIds(cluster, namespace) as ids:
        operator.start()
        wait_for_status_writes(cluster, namespace, FLEET // 10, 90)
        killed = time.time()
        if fault == "kube-apiserver":
            cluster.kill_apiserver()
            rbac_synced(cluster, namespace, chart_identity)
        else:
            # down for 3 s: requests in flight fail, the apiserver's watches of etcd break
            cluster.restart_etcd(kill=True, down_seconds=3)
        back = time.time() - killed
        seen = all_converge(kube, namespace, FLEET, CONVERGE_SECONDS)
        took = time.time() - killed
    [before] = statuses_written(cluster, namespace, started, killed)
    print(f"\n{fault}: {before}/{FLEET} done at the kill, back after {back:.1f}s, all {took:.1f}s")
    assert before < FLEET, "the kill came after the reconcile: it tested nothing"
    assert_no_duplicates(apps, seen, namespace)
    assert assert_one_key_lineage(core, seen, ids) == FLEET
    assert operator.proc is not None and operator.proc.poll() is None


# Seconds each restarted operator lives before its kill -9 (after the first kill,
# in the middle of the reconcile): five kills in all.
KILL_AFTER_SECONDS = (3.5, 2.0, 4.0, 3.0)


def test_operator_kill_9_every_few_seconds_converges_without_double_minted_keys(
    cluster: Cluster,
    namespace: str,
    release_service_ips: None,
    make_operator: Callable[..., OperatorProcess],
    kube: Kube,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    apply_all(cluster, namespace, generated_fleet(FLEET))
    operator = make_operator("operator")
    started = time.time()
    with KeyIds(cluster, namespace) as ids:
        operator.start()
        wait_for_status_writes(cluster, namespace, FLEET // 10, 90)
        kills = []
        for seconds in (0.0, *KILL_AFTER_SECONDS):
            if seconds:
                operator.start()
                time.sleep(seconds)  # the fault's schedule, not an assertion
            kills.append(time.time())
            operator.kill()
            assert operator.proc is not None and operator.proc.returncode == -9
        operator.start()
        seen = all_converge(kube, namespace, FLEET, CONVERGE_SECONDS)
        took = time.time() - kills[0]
    done = statuses_written(cluster, namespace, started, *kills)
    print(f"\nkill -9: {done} of {FLEET} done at each kill, all {took:.1f}s after the first")
    assert done[0] < FLEET, "the first kill came after the reconcile: it tested nothing"
    assert_no_duplicates(apps, seen, namespace)
    # both Secrets of each: credentials and client keys, all generated
    assert assert_one_key_lineage(core, seen, ids) == 2 * FLEET


# (fault, seconds it lasts); resets and drops follow one another so that the
# connections a reset forces the operator to open meet the refusal
NETWORK_FAULTS = (
    ("delay", 3.0),
    ("reset", 1.0),
    ("drop", 2.0),
    ("pass", 1.0),
    ("delay", 2.0),
    ("reset", 0.5),
    ("drop", 2.0),
    ("reset", 0.5),
)
DELAY_MS = 250


def test_network_faults_between_operator_and_apiserver_all_converge(
    cluster: Cluster,
    namespace: str,
    release_service_ips: None,
    proxy: TcpProxy,
    make_operator: Callable[..., OperatorProcess],
    chart_identity: ChartIdentity,
    kube: Kube,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    apply_all(cluster, namespace, generated_fleet(PROXIED_FLEET))
    kubeconfig = proxied_kubeconfig(chart_identity.install(), proxy)
    operator = make_operator("operator", *BACKOFF, kubeconfig=kubeconfig)
    started = time.time()
    with KeyIds(cluster, namespace) as ids:
        operator.start()
        wait_for_status_writes(cluster, namespace, PROXIED_FLEET // 8, 90)
        faulted = time.time()
        reset = 0
        for fault, seconds in NETWORK_FAULTS:
            if fault == "delay":
                proxy.delay(DELAY_MS)
            elif fault == "reset":
                reset += proxy.reset()
            elif fault == "drop":
                proxy.drop()
            else:
                proxy.pass_through()
            time.sleep(seconds)  # the fault's schedule, not an assertion
        proxy.pass_through()
        seen = all_converge(kube, namespace, PROXIED_FLEET, CONVERGE_SECONDS)
        took = time.time() - faulted
    stats = proxy.stats()
    [before] = statuses_written(cluster, namespace, started, faulted)
    print(f"\nnetwork: {before}/{PROXIED_FLEET} done at the first fault, all {took:.1f}s; {stats}")
    assert before < PROXIED_FLEET, "the faults came after the reconcile: they tested nothing"
    assert reset > 0, "no open connection was reset"
    assert stats.dropped > 0, "no new connection was refused"
    assert_no_duplicates(apps, seen, namespace)
    assert assert_one_key_lineage(core, seen, ids) == 2 * PROXIED_FLEET
    assert operator.proc is not None and operator.proc.poll() is None


def https_get(cluster: Cluster, url: str) -> int:
    """Status of an authenticated GET (the admin's token, the cluster's CA)."""
    context = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))
    token = (cluster.pki / "admin.token").read_text().strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return int(response.status)


def image(apps: client.AppsV1Api, namespace: str) -> str:
    deployment: Any = apps.read_namespaced_deployment("bot", namespace)
    return str(deployment.spec.template.spec.containers[0].image)


def first_watch_after(cluster: Cluster, namespace: str, resource: str, since: float) -> float:
    """When the API server received the operator's first watch of `resource` after
    `since` (wall clock), from the audit log; infinity when there is none."""
    watches = audit_entries(cluster, namespace, since, b'"verb":"watch"')
    return min(
        (e["received"] for e in watches if e["objectRef"]["resource"] == resource),
        default=float("inf"),
    )


def test_silently_dead_watches_are_detected_and_reestablished(
    cluster: Cluster,
    namespace: str,
    proxy: TcpProxy,
    make_operator: Callable[..., OperatorProcess],
    chart_identity: ChartIdentity,
    apps: client.AppsV1Api,
) -> None:
    kubeconfig = proxied_kubeconfig(chart_identity.install(), proxy)
    operator = make_operator(
        "operator",
        *("--watch-timeout-seconds", str(WATCH_TIMEOUT)),
        *("--resync-seconds", str(RESYNC)),
        kubeconfig=kubeconfig,
    )
    operator.start()
    apply(cluster, namespace, manifest(credentials=GENERATED))
    wait_for(lambda: converged(cluster, namespace), 60, "convergence through the proxy")
    wait_for(lambda: operator.readyz()[0] == 200, 30, "every watch streaming")
    served = proxy.stats().served

    # Every open connection (the watches, the reconciler's pooled ones) goes silent:
    # no data, no end of stream, no reset. Connections opened from now on pass.
    blackholed = time.time()
    silenced = proxy.blackhole(new=False)
    changed = time.monotonic()
    apply(cluster, namespace, manifest(credentials=GENERATED, image="registry.example.com/bot:2.0"))
    assert https_get(cluster, proxy.url + "/version") == 200, "a new connection is served"
    # The periodic resync reads afresh, not from the watches' index: it finds the
    # change within RESYNC seconds, once the reconciler's pooled connection, dead
    # too, is given up after REQUEST_TIMEOUT (urllib3 retries on a new connection).
    # The watch request under way ends at kopf's client timeout, counted from its
    # start, and its successor on a new connection streams again.
    assert RESYNC + REQUEST_TIMEOUT < CLIENT_TIMEOUT
    bound = RESYNC + REQUEST_TIMEOUT + 15
    wait_for(
        lambda: image(apps, namespace).endswith(":2.0"),
        bound,
        "the change reconciled while the watches were dead",
        interval=0.5,
    )
    noticed = time.monotonic() - changed
    wait_for(lambda: converged(cluster, namespace), 30, "convergence")
    watched = wait_for(
        lambda: (
            (t := first_watch_after(cluster, namespace, "agentdeployments", blackholed)) < math.inf
            and t - blackholed
        ),
        CLIENT_TIMEOUT + 20,
        "the watch of AgentDeployments re-established",
        interval=1.0,
    )
    stats = proxy.stats()
    print(
        f"\nblackhole: {silenced} connections silenced; the change reconciled after "
        f"{noticed:.1f}s (bound {bound}s), the watch re-established after "
        f"{watched:.1f}s (bound {CLIENT_TIMEOUT + 10}s); {stats}"
    )
    assert silenced > 0
    # a live watch would have brought the change within WATCH_TIMEOUT: it had died
    assert 2 * WATCH_TIMEOUT < noticed <= bound
    # ... was found dead by the client timeout, and started again
    assert 2 * WATCH_TIMEOUT < watched <= CLIENT_TIMEOUT + 10
    # the operator's new connections (the re-established watches) were served
    assert stats.served > served + 1
    wait_for(lambda: operator.readyz()[0] == 200, 30, "every watch streaming again")
    assert operator.proc is not None and operator.proc.poll() is None
