"""Operator scale benchmark: how fast N AgentDeployments converge, ours vs a naive kopf operator.

For each size N and each operator (ours: `agent-operator run`; the baseline:
`kopf run bench/naive_operator.py`), alternating ours/baseline per N, on a fresh
local control plane each (hack/localcluster.py in `.cluster/scale-<operator>-<N>`,
deleted afterwards): apply N AgentDeployments with one `kubectl apply --server-side`,
watch until every one has converged, count the operator's API requests from the
audit log, its CPU and peak RSS and the API server's CPU; then let the writes that
trail convergence settle, count the operator's writes in an idle window, and, for
ours, put a new image on all N and time until every Deployment runs it. Prints a
table, writes bench/results/operator_scale.json and a plot. See bench/README.md.

    .venv/bin/python bench/operator_scale.py [--quick] [--sizes 100,300,1000]
                                             [--timeout S] [--idle-seconds S] [--publish]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from agent_operator.api import API_VERSION, KIND
from agent_operator.render import render_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hack"))
from gateway import stop  # bench/gateway.py: SIGTERM, then SIGKILL after 15 s
from localcluster import DEFAULT_DIR, Cluster, ClusterError, free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PUBLISHED_PLOT = ROOT / "docs" / "operator_scale.png"
BASELINE = ROOT / "bench" / "naive_operator.py"
VENV_BIN = Path(sys.executable).parent
CRDS = (
    ROOT / "crds" / "agentdeployments.agents.dev.yaml",
    ROOT / "crds" / "spendrecords.agents.dev.yaml",
    ROOT / "crds" / "kopf-peering.yaml",
)
# The local control plane's default /24 runs out after about 250 Services.
SERVICE_CIDR = "10.96.0.0/16"
NAMESPACE = "bench"
OPERATORS = ("ours", "baseline")
OPERATOR_USER = "agent-operator"  # both operators run as it: the audit log logs all its requests
CONTROLLER_USER = "system:kube-controller-manager"
VERBS = ("get", "list", "watch", "create", "patch", "update", "delete")
WRITES = frozenset({"create", "patch", "update", "delete", "deletecollection"})
WATCH_SECONDS = 30  # server-side timeout of one watch of the bench's own watchers
PROGRESS_SECONDS = 15.0
QUIET_SECONDS = 3.0  # no write for this long: the operator and the controllers have settled
CLK_TCK = os.sysconf("SC_CLK_TCK")

# kind -> (API prefix, plural, metadata only): what the bench watches, as the admin
# (whose reads the audit policy does not log). Metadata-only watches of the children
# whose body does not matter keep the watchers' own load small.
RESOURCES: dict[str, tuple[str, str, bool]] = {
    KIND: (f"/apis/{API_VERSION}", "agentdeployments", False),
    "Deployment": ("/apis/apps/v1", "deployments", False),
    "Service": ("/api/v1", "services", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
}
METADATA = "application/json;as=PartialObjectMetadata{};g=meta.k8s.io;v=v1"

Child = tuple[str, str]  # (kind, name)


# ------------------------------------------------------------------ workload


def manifest(i: int, release: int) -> dict[str, Any]:
    """AgentDeployment i: even ones "full" (autoscaling, a daily budget), odd ones
    minimal; `release` is the image's major version (a new one is a spec change)."""
    spec: dict[str, Any] = {
        "image": f"registry.example.com/agent-{i % 7}:{release}.{i % 3}",
        "credentials": {"issuer": {"type": "generated"}},
    }
    if i % 2 == 0:
        spec["autoscaling"] = {"minReplicas": 1, "maxReplicas": 3}
        spec["budget"] = {"limits": [{"period": "day", "maxUSD": 5}]}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": f"agent-{i:04d}", "namespace": NAMESPACE},
        "spec": spec,
    }


def expected_children(operator: str, body: dict[str, Any]) -> list[Child]:
    """What must exist for the object to count as converged: ours renders its set
    (the same builders as the reconciler); the baseline makes three."""
    name = body["metadata"]["name"]
    if operator == "baseline":
        return [("Deployment", name), ("Service", name), ("ConfigMap", f"{name}-config")]
    children = [(c["kind"], c["metadata"]["name"]) for c in render_manifest(body, None, NAMESPACE)]
    unknown = {kind for kind, _ in children} - set(RESOURCES)
    if unknown:
        raise SystemExit(f"the operator renders kinds the bench does not watch: {unknown}")
    return children


def write_manifests(path: Path, bodies: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all(bodies, sort_keys=False))


def agent_image(deployment: dict[str, Any]) -> str | None:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    for container in containers or []:
        if container.get("name") == "agent":
            return str(container.get("image"))
    return None


# ------------------------------------------------------------------ watching


class Api:
    """GETs and watch streams as the kubeconfig's user (standard library: the
    bench's watchers stay light next to the operators they measure)."""

    def __init__(self, kubeconfig: Path) -> None:
        config = json.loads(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        url = urllib.parse.urlsplit(cluster["server"])
        self.host, self.port = str(url.hostname), int(url.port or 443)
        self.context = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.token = config["users"][0]["user"]["token"]

    def open(
        self, path: str, accept: str, timeout: float
    ) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )
        conn.request(
            "GET", path, headers={"Authorization": f"Bearer {self.token}", "Accept": accept}
        )
        response = conn.getresponse()
        if response.status != 200:
            body = response.read(300)
            conn.close()
            raise OSError(f"GET {path}: {response.status} {body!r}")
        return conn, response


Sink = Callable[[str, str, dict[str, Any]], None]  # (kind, event type, object)


class Watcher(threading.Thread):
    """List then watch one kind in the namespace, re-listing after a 410 or a
    dropped stream; every object goes to the sink."""

    def __init__(self, api: Api, kind: str, sink: Sink) -> None:
        super().__init__(name=f"watch-{kind}", daemon=True)
        prefix, plural, metadata_only = RESOURCES[kind]
        self.api, self.kind, self.sink = api, kind, sink
        self.path = f"{prefix}/namespaces/{NAMESPACE}/{plural}"
        self.accept_list = METADATA.format("List") if metadata_only else "application/json"
        self.accept_watch = METADATA.format("") if metadata_only else "application/json"
        self.listed = threading.Event()
        self.stopping = threading.Event()
        self.conn: http.client.HTTPSConnection | None = None
        self.errors: list[str] = []

    def run(self) -> None:
        version = ""
        while not self.stopping.is_set():
            try:
                if not version:
                    version = self._list()
                version = self._watch(version)
            except (OSError, http.client.HTTPException, ValueError, KeyError) as err:
                if self.stopping.is_set():
                    return
                self.errors.append(f"{type(err).__name__}: {err}"[:300])
                version = ""
                self.stopping.wait(1.0)

    def _list(self) -> str:
        conn, response = self.api.open(self.path, self.accept_list, 60)
        try:
            listing = json.loads(response.read())
        finally:
            conn.close()
        for item in listing.get("items") or []:
            self.sink(self.kind, "ADDED", item)
        self.listed.set()
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str:
        """Stream events from `version`; the version to go on from ("" to re-list)."""
        query = f"?watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}"
        path = f"{self.path}{query}&resourceVersion={version}"
        self.conn, response = self.api.open(path, self.accept_watch, WATCH_SECONDS + 30)
        try:
            for line in response:
                if self.stopping.is_set():
                    break
                event = json.loads(line)
                if event["type"] == "ERROR":  # 410 Gone: list again
                    return ""
                version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self.sink(self.kind, event["type"], event["object"])
        finally:
            self.conn.close()
        return version

    def stop(self) -> None:
        self.stopping.set()
        conn = self.conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)


@dataclass
class Phase:
    """One convergence phase: since when each object's clock runs, and when it converged
    (time.monotonic())."""

    name: str
    n: int
    started: dict[str, float] = field(default_factory=dict)
    converged: dict[str, float] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


class Tracker:
    """What the watchers saw, and the running phase's convergence of each object."""

    def __init__(self, operator: str, expected: dict[str, list[Child]]) -> None:
        self.operator = operator
        self.expected = expected
        self.owner = {child: agd for agd, children in expected.items() for child in children}
        self.lock = threading.Lock()
        self.present: set[Child] = set()
        self.generation: dict[str, int] = {}
        self.observed: dict[str, int] = {}
        self.images: dict[str, str | None] = {}
        self.phase: Phase | None = None
        # reconverge phase: the generation it starts from and the image wanted
        self.base_generation: dict[str, int] = {}
        self.want_image: dict[str, str] = {}

    def sink(self, kind: str, kind_of_event: str, obj: dict[str, Any]) -> None:
        now = time.monotonic()
        meta = obj.get("metadata", {})
        name = str(meta.get("name"))
        with self.lock:
            if kind == KIND:
                if kind_of_event == "DELETED" or name not in self.expected:
                    return
                agd = name
                self.generation[agd] = int(meta.get("generation") or 0)
                self.observed[agd] = int((obj.get("status") or {}).get("observedGeneration") or 0)
            else:
                child = (kind, name)
                found = self.owner.get(child)
                if found is None:
                    return
                agd = found
                if kind_of_event == "DELETED":
                    self.present.discard(child)
                else:
                    self.present.add(child)
                if kind == "Deployment":
                    self.images[agd] = agent_image(obj)
            self._check(agd, now)

    def _check(self, agd: str, now: float) -> None:
        phase = self.phase
        if phase is None or agd in phase.converged or agd not in self.generation:
            return
        if phase.name == "converge":
            phase.started.setdefault(agd, now)  # its first event: the object exists
            ok = self._children_exist(agd) and (
                self.operator == "baseline" or self.observed[agd] == self.generation[agd]
            )
        else:  # reconverge: the clock runs from the new generation's first sight
            if self.generation[agd] <= self.base_generation.get(agd, 0):
                return
            phase.started.setdefault(agd, now)
            ok = (
                self.observed[agd] == self.generation[agd]
                and self.images.get(agd) == self.want_image[agd]
                and self._children_exist(agd)
            )
        if ok:
            phase.converged[agd] = now
            if len(phase.converged) >= phase.n:
                phase.done.set()

    def _children_exist(self, agd: str) -> bool:
        return all(child in self.present for child in self.expected[agd])

    def start(self, phase: Phase) -> None:
        with self.lock:
            self.phase = phase
            self.base_generation = dict(self.generation)
            now = time.monotonic()
            for agd in list(self.generation):
                self._check(agd, now)


# ------------------------------------------------------------------ measuring


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, seconds (from /proc, Linux); NaN once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return math.nan
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (/proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + ticks[4]  # of user nice system idle iowait irq softirq steal
    return sum(ticks) - idle, sum(ticks)


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set size) of a process, MB; NaN once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return math.nan
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return math.nan


class Audit:
    """The operator user's requests from the API server's audit log, read as it grows:
    (time received, verb, resource[/subresource]), once per request (a watch logs
    ResponseStarted and ResponseComplete); and the kube-controller-manager's writes
    (ReplicaSets, pods, Deployment and HPA status: what the operator's children make
    the cluster do, and what wakes the operator up after its own work is done)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = 0
        self.seen: set[str] = set()
        self.requests: list[tuple[float, str, str]] = []
        self.controller_writes: list[tuple[float, str, str]] = []

    def read(self) -> None:
        if not self.log.exists():
            return
        with self.log.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        operator = f'"username":"{OPERATOR_USER}"'.encode()
        controller = f'"username":"{CONTROLLER_USER}"'.encode()
        for line in data[:end].splitlines():
            ours = operator in line
            if not ours and controller not in line:
                continue
            event = json.loads(line)
            if event["auditID"] in self.seen:
                continue
            self.seen.add(event["auditID"])
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", event.get("requestURI", "?"))
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            received = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
            if ours:
                self.requests.append((received, event["verb"], resource))
            elif event["verb"] in WRITES:
                self.controller_writes.append((received, event["verb"], resource))

    def window(self, start: float, end: float) -> Counter[tuple[str, str]]:
        """Requests received in [start, end) (wall-clock seconds), by (verb, resource)."""
        self.read()
        return Counter((v, r) for t, v, r in self.requests if start <= t < end)

    def controller(self, start: float, end: float) -> Counter[str]:
        """The controller manager's writes received in [start, end), by resource."""
        self.read()
        return Counter(r for t, _, r in self.controller_writes if start <= t < end)


def summarize(counts: Counter[tuple[str, str]], n: int) -> dict[str, Any]:
    """Per-object request figures of one window."""
    by_verb: Counter[str] = Counter()
    for (verb, _), count in counts.items():
        by_verb[verb] += count
    writes = sum(c for (verb, _), c in counts.items() if verb in WRITES)
    events = sum(c for (verb, res), c in counts.items() if verb == "create" and res == "events")
    top = counts.most_common(12)
    return {
        "requests": sum(counts.values()),
        "writes": writes,
        "events_created": events,
        "by_verb": dict(by_verb),
        "per_object": {verb: by_verb.get(verb, 0) / n for verb in VERBS},
        "requests_per_object": sum(counts.values()) / n,
        "writes_per_object": writes / n,
        "events_per_object": events / n,
        "top": [{"verb": v, "resource": r, "count": c} for (v, r), c in top],
    }


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)]


# ------------------------------------------------------------------ processes


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_operator(
    operator: str, cluster: Cluster, log: Path, audit: Audit, timeout: float
) -> subprocess.Popen[bytes]:
    """Start one operator as user agent-operator; return once it answers /healthz
    (ours: /readyz too, its watches listed) and its AgentDeployment watch is open."""
    health = free_port()
    if operator == "ours":
        command = [str(VENV_BIN / "agent-operator"), "run", "--namespace", NAMESPACE]
        command += ["--standalone", "--metrics-port", str(free_port())]
        command += ["--health-port", str(health)]
    else:
        command = [str(VENV_BIN / "kopf"), "run", str(BASELINE), "--namespace", NAMESPACE]
        command += ["--standalone", "--liveness", f"http://127.0.0.1:{health}/healthz"]
    env = {**os.environ, "KUBECONFIG": str(cluster.operator_kubeconfig)}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    checks = [f"http://127.0.0.1:{health}/healthz"]
    if operator == "ours":
        checks.append(f"http://127.0.0.1:{health}/readyz")
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{operator} exited with {process.returncode}: {tail(log)}")
            if all(http_ok(url) for url in checks) and watching_agents(audit):
                return process
            if time.monotonic() > deadline:
                raise RuntimeError(f"{operator} not ready after {timeout:.0f} s: {tail(log)}")
            time.sleep(0.25)
    except BaseException:
        stop(process)
        raise


def watching_agents(audit: Audit) -> bool:
    audit.read()
    return any(v == "watch" and r == "agentdeployments" for _, v, r in audit.requests)


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def watching(api: Api, tracker: Tracker) -> Iterator[list[Watcher]]:
    watchers = [Watcher(api, kind, tracker.sink) for kind in RESOURCES]
    for watcher in watchers:
        watcher.start()
    try:
        for watcher in watchers:
            if not watcher.listed.wait(60):
                raise RuntimeError(f"{watcher.name} did not list: {watcher.errors[-1:]}")
        yield watchers
    finally:
        for watcher in watchers:
            watcher.stop()
        for watcher in watchers:
            watcher.join(10)


# ------------------------------------------------------------------ one run


@dataclass
class Window:
    """Wall clock and CPU counters at one instant of a run."""

    wall: float
    mono: float
    operator_cpu: float
    apiserver_cpu: float
    etcd_cpu: float
    controller_manager_cpu: float
    machine: tuple[int, int]  # (busy, total) jiffies of all CPUs

    @classmethod
    def now(cls, operator_pid: int, pids: dict[str, int]) -> Window:
        return cls(
            time.time(),
            time.monotonic(),
            cpu_seconds(operator_pid),
            cpu_seconds(pids["kube-apiserver"]),
            cpu_seconds(pids["etcd"]),
            cpu_seconds(pids["kube-controller-manager"]),
            machine_jiffies(),
        )

    def costs(self, end: Window) -> dict[str, Any]:
        return {
            "window_utc": [utc(self.wall), utc(end.wall)],
            "seconds": end.mono - self.mono,
            "operator_cpu_s": end.operator_cpu - self.operator_cpu,
            "apiserver_cpu_s": end.apiserver_cpu - self.apiserver_cpu,
            "etcd_cpu_s": end.etcd_cpu - self.etcd_cpu,
            "controller_manager_cpu_s": end.controller_manager_cpu - self.controller_manager_cpu,
            # all processes, this run's and others': how saturated the machine was
            "machine_busy_pct": 100.0
            * (end.machine[0] - self.machine[0])
            / max(1, end.machine[1] - self.machine[1]),
        }


def utc(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


def window_figures(audit: Audit, begin: Window, end: Window, n: int) -> dict[str, Any]:
    """CPU and the operator's requests between two instants."""
    figures = begin.costs(end)
    figures.update(summarize(audit.window(begin.wall, end.wall), n))
    controller = audit.controller(begin.wall, end.wall)
    figures["controller_writes"] = sum(c for r, c in controller.items() if r != "events")
    figures["controller_events"] = controller["events"]
    return figures


def quiet(audit: Audit, since: float, cap: float, process: subprocess.Popen[bytes]) -> None:
    """Wait until neither the operator nor the controller manager (but for its Events:
    the autoscaler's repeat every 15 s) has written for QUIET_SECONDS (wall clock, at
    most `cap` seconds after `since`)."""
    while process.poll() is None:
        audit.read()
        writes = [t for t, v, _ in audit.requests if t >= since and v in WRITES]
        writes += [t for t, _, r in audit.controller_writes if t >= since and r != "events"]
        now = time.time()
        if now - max(writes, default=since) >= QUIET_SECONDS or now - since >= cap:
            return
        time.sleep(0.5)


def apply(cluster: Cluster, path: Path, timeout: float) -> tuple[float, str | None]:
    """One `kubectl apply --server-side` as the admin: (seconds, error or None)."""
    started = time.monotonic()
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(path), timeout=timeout)
    except (ClusterError, subprocess.TimeoutExpired) as err:
        return time.monotonic() - started, str(err)[-500:]
    return time.monotonic() - started, None


def wait_phase(
    phase: Phase, started: float, timeout: float, process: subprocess.Popen[bytes], label: str
) -> str | None:
    """Wait until every object converged: None, or why not (timeout, operator exited)."""
    deadline = started + timeout
    while not phase.done.wait(min(PROGRESS_SECONDS, max(0.0, deadline - time.monotonic()))):
        if process.poll() is not None:
            return f"operator exited with {process.returncode}"
        if time.monotonic() >= deadline:
            return f"timeout after {timeout:.0f} s"
        print(
            f"  {label} {phase.name}: {len(phase.converged)}/{phase.n} converged"
            f" at {time.monotonic() - started:.0f} s",
            flush=True,
        )
    return None


def phase_figures(phase: Phase, t0: float, end: float, error: str | None) -> dict[str, Any]:
    latencies = [phase.converged[a] - phase.started[a] for a in phase.converged]
    times = sorted(t - t0 for t in phase.converged.values())
    complete = len(phase.converged) >= phase.n
    return {
        "converged": len(phase.converged),
        "n": phase.n,
        "complete": complete,
        "error": error,
        "seconds": (times[-1] if complete and times else end - t0),
        "objects_per_s": phase.n / times[-1] if complete and times and times[-1] > 0 else None,
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies) if latencies else None,
        "timeline_s": [round(t, 3) for t in times],
    }


def run_one(operator: str, n: int, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    label = f"{operator} N={n}"
    print(f"== {label}", flush=True)
    result: dict[str, Any] = {"operator": operator, "n": n}
    directory = DEFAULT_DIR / f"scale-{operator}-{n}"
    if directory.exists():  # left by an interrupted run
        Cluster(directory).down()
        shutil.rmtree(directory)
    # no simulated nodes: figures stay comparable with runs made before they existed
    cluster = Cluster(directory, service_cidr=SERVICE_CIDR, nodes=False)
    process: subprocess.Popen[bytes] | None = None
    try:
        cluster.up()
        for crd in CRDS:
            cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        crds = ["crd/agentdeployments.agents.dev", "crd/spendrecords.agents.dev"]
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
        cluster.kubectl("create", "namespace", NAMESPACE)
        bodies = [manifest(i, 1) for i in range(n)]
        expected = {b["metadata"]["name"]: expected_children(operator, b) for b in bodies}
        first, second = directory / "agents-1.yaml", directory / "agents-2.yaml"
        write_manifests(first, bodies)
        audit = Audit(cluster.audit_log)
        log = logs / f"{operator}-{n}.log"
        log.unlink(missing_ok=True)
        process = start_operator(operator, cluster, log, audit, 90)
        pids = cluster.pids()
        tracker = Tracker(operator, expected)
        with watching(Api(cluster.kubeconfig), tracker) as watchers:
            # converge: time 0 just before the apply
            phase = Phase("converge", n)
            tracker.start(phase)
            begin = Window.now(process.pid, pids)
            result["apply_s"], result["apply_error"] = apply(cluster, first, args.timeout)
            error = wait_phase(phase, begin.mono, args.timeout, process, label)
            end = Window.now(process.pid, pids)
            converge = phase_figures(phase, begin.mono, end.mono, error)
            converge.update(window_figures(audit, begin, end, n))
            converge["operator_rss_peak_mb"] = peak_rss_mb(process.pid)
            result["converge"] = converge
            tracker.phase = None

            # settle: what trails convergence (the controller manager making ReplicaSets
            # and pods and updating the Deployments' status, the operator's status
            # patches that follow, queued Events), until neither writes for QUIET_SECONDS
            print(f"  {label} settle", flush=True)
            quiet(audit, end.wall, args.timeout, process)
            settled = Window.now(process.pid, pids)
            result["settle"] = window_figures(audit, end, settled, n)

            # idle: nothing changes; the operator should only read, if that
            print(f"  {label} idle {args.idle_seconds:.0f} s", flush=True)
            time.sleep(args.idle_seconds)
            idle_end = Window.now(process.pid, pids)
            result["idle"] = window_figures(audit, settled, idle_end, n)
            result["idle"]["operator_rss_peak_mb"] = peak_rss_mb(process.pid)

            # reconverge: a new image on every object (ours only: the baseline has no
            # update handler)
            if operator == "ours":
                changed = [manifest(i, 2) for i in range(n)]
                write_manifests(second, changed)
                tracker.want_image = {b["metadata"]["name"]: b["spec"]["image"] for b in changed}
                phase = Phase("reconverge", n)
                tracker.start(phase)
                begin = Window.now(process.pid, pids)
                result["reapply_s"], result["reapply_error"] = apply(cluster, second, args.timeout)
                error = wait_phase(phase, begin.mono, args.timeout, process, label)
                end = Window.now(process.pid, pids)
                reconverge = phase_figures(phase, begin.mono, end.mono, error)
                reconverge.update(window_figures(audit, begin, end, n))
                result["reconverge"] = reconverge
                tracker.phase = None
            result["operator_rss_peak_mb"] = peak_rss_mb(process.pid)
            result["watch_errors"] = {w.kind: w.errors for w in watchers if w.errors}
        result["operator_log"] = str(log)
    except (ClusterError, RuntimeError, subprocess.SubprocessError, OSError) as err:
        result["error"] = f"{type(err).__name__}: {err}"[-2000:]
        print(f"  {label} failed: {result['error']}", flush=True)
    finally:
        stop(process)
        if process is not None and process.returncode not in (None, 0, -15):
            result["operator_exit"] = process.returncode
        cluster.down()
        if not args.keep_clusters:
            shutil.rmtree(directory, ignore_errors=True)
    converge = result.get("converge", {})
    if converge:
        print(
            f"  {label}: {converge['converged']}/{n} in {converge['seconds']:.1f} s,"
            f" {converge['requests_per_object']:.1f} requests/object",
            flush=True,
        )
    return result


# ------------------------------------------------------------------ report


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


COLUMNS = [
    "operator", "N", "converge s", "apply s", "obj/s", "p50 s", "p99 s",
    *(f"{verb}/obj" for verb in VERBS),
    "Events/obj", "writes/obj", "op CPU s", "RSS MB", "apisrv CPU s", "busy %",
    "settle s", "settle writes", "idle writes", "idle kcm writes", "reconverge s",
]  # fmt: skip


def table_row(run: dict[str, Any]) -> list[str]:
    converge, settle, idle = run.get("converge"), run.get("settle", {}), run.get("idle", {})
    if not converge:
        return [run["operator"], str(run["n"]), "failed", *["-"] * (len(COLUMNS) - 3)]
    seconds = fmt(converge["seconds"], 1)
    if not converge["complete"]:
        seconds = f"{converge['converged']}/{converge['n']}!"
    reconverge = run.get("reconverge")
    if reconverge is None:
        again = "n/a"
    elif reconverge["complete"]:
        again = fmt(reconverge["seconds"], 1)
    else:
        again = f"{reconverge['converged']}/{reconverge['n']}!"
    return [
        run["operator"],
        str(run["n"]),
        seconds,
        fmt(run.get("apply_s"), 1),
        fmt(converge["objects_per_s"], 1),
        fmt(converge["p50_s"]),
        fmt(converge["p99_s"]),
        *(fmt(converge["per_object"][verb]) for verb in VERBS),
        fmt(converge["events_per_object"]),
        fmt(converge["writes_per_object"]),
        fmt(converge["operator_cpu_s"], 1),
        fmt(idle.get("operator_rss_peak_mb", converge["operator_rss_peak_mb"]), 0),
        fmt(converge["apiserver_cpu_s"], 1),
        fmt(converge["machine_busy_pct"], 0),
        fmt(settle.get("seconds"), 1),
        fmt(settle.get("writes")),
        fmt(idle.get("writes")),
        fmt(idle.get("controller_writes")),
        again,
    ]


RATIOS: dict[str, Callable[[dict[str, Any]], float | None]] = {  # from a converge phase
    "converge s": lambda c: c["seconds"] if c["complete"] else None,
    "p50 s": lambda c: c["p50_s"],
    "p99 s": lambda c: c["p99_s"],
    "requests/obj": lambda c: c["requests_per_object"],
    "writes/obj": lambda c: c["writes_per_object"],
    "op CPU s": lambda c: c["operator_cpu_s"],
    "RSS MB": lambda c: c["operator_rss_peak_mb"],
    "apisrv CPU s": lambda c: c["apiserver_cpu_s"],
}


def ratios(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """ours / baseline per N, for the figures of the converge phase."""
    out: dict[str, dict[str, float | None]] = {}
    for n in sorted({run["n"] for run in runs}):
        pair = {r["operator"]: r.get("converge") for r in runs if r["n"] == n}
        ours, base = pair.get("ours"), pair.get("baseline")
        if not ours or not base:
            continue
        row: dict[str, float | None] = {}
        for name, of in RATIOS.items():
            a, b = of(ours), of(base)
            row[name] = a / b if a is not None and b else None
        out[str(n)] = row
    return out


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)))


def report(runs: list[dict[str, Any]], ratio: dict[str, dict[str, float | None]]) -> None:
    print()
    print_table(COLUMNS, [table_row(run) for run in runs])
    print("(! = not all converged before --timeout; per-object figures over the converge phase)")
    if ratio:
        print("\nours / baseline")
        header = ["N", *RATIOS]
        rows = [[n, *(fmt(v) for v in row.values())] for n, row in ratio.items()]
        print_table(header, rows)
    print("\nmost frequent requests, per object (verb resource count):")
    for run in runs:
        for phase in ("converge", "settle", "idle", "reconverge"):
            if run.get(phase) and run[phase]["top"]:
                top = ", ".join(
                    f"{t['verb']} {t['resource']} {t['count'] / run['n']:.2f}"
                    for t in run[phase]["top"][:6]
                )
                print(f"  {run['operator']} N={run['n']} {phase}: {top}")
    for run in runs:
        if run.get("error"):
            print(f"\n{run['operator']} N={run['n']} failed: {run['error']}")


def plot(runs: list[dict[str, Any]], path: Path) -> bool:
    """Converged objects over time, one line per run; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (.venv/bin/pip install matplotlib): no plot")
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    sizes = sorted({run["n"] for run in runs})
    colors = {n: f"C{i}" for i, n in enumerate(sizes)}
    for run in runs:
        converge = run.get("converge")
        if not converge:
            continue
        times = converge["timeline_s"]
        style = "-" if run["operator"] == "ours" else "--"
        ax.step(
            [0.0, *times],
            range(len(times) + 1),
            where="post",
            linestyle=style,
            color=colors[run["n"]],
            label=f"{run['operator']} N={run['n']}",
        )
    ax.set_xlabel("seconds since the apply started")
    ax.set_ylabel("AgentDeployments converged")
    ax.set_title("Operator scale: ours (solid) vs naive kopf operator (dashed)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def strict_json(value: Any) -> Any:
    """NaN (a process gone before it was measured) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def git_revision() -> dict[str, Any]:
    """HEAD and the files changed against it (read-only: no index refresh)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return done.stdout.strip()

    return {"head": git("rev-parse", "HEAD"), "changed": git("diff", "--name-only", "HEAD").split()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,300,1000", help="comma-separated N")
    parser.add_argument("--quick", action="store_true", help="sizes 50,100")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per phase")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--operators", default=",".join(OPERATORS), help="ours,baseline")
    parser.add_argument("--output", type=Path, default=RESULTS / "operator_scale.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "operator_scale.png")
    parser.add_argument("--publish", action="store_true", help=f"copy the plot to {PUBLISHED_PLOT}")
    parser.add_argument(
        "--keep-clusters", action="store_true", help="keep .cluster/scale-* (stopped) for a look"
    )
    args = parser.parse_args()
    sizes = [50, 100] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    operators = [o for o in args.operators.split(",") if o]
    if set(operators) - set(OPERATORS):
        parser.error(f"--operators: choose from {OPERATORS}")
    logs = args.output.parent / f"{args.output.stem}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    runs = [run_one(operator, n, args, logs) for n in sizes for operator in operators]
    ratio = ratios(runs)
    report(runs, ratio)
    results = {
        "benchmark": "operator_scale",
        "date": started.isoformat(timespec="seconds"),
        "duration_s": (datetime.now(UTC) - started).total_seconds(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "git": git_revision(),
        "sizes": sizes,
        "params": {
            "timeout_s": args.timeout,
            "idle_seconds": args.idle_seconds,
            "service_cidr": SERVICE_CIDR,
            "namespace": NAMESPACE,
        },
        "runs": runs,
        "ratios_ours_over_baseline": ratio,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(strict_json(results), indent=2) + "\n")
    print(f"\nwrote {args.output}")
    if plot(runs, args.plot):
        print(f"wrote {args.plot}")
        if args.publish:
            shutil.copy(args.plot, PUBLISHED_PLOT)
            print(f"copied to {PUBLISHED_PLOT}")
    failed = any(r.get("error") or not r.get("converge", {}).get("complete") for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
