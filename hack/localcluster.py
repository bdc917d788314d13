"""A local Kubernetes control plane on loopback: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler from the multi-call binary that
`hack/build-controlplane` builds from the upstream Go modules, and simulated
nodes: kwok (`hack/build-kwok`) runs the pods bound to them through their
lifecycle (Running and Ready at once; gone when deleted), so Deployments
become Available and rollouts complete. `nodes=False` (`up --no-nodes`)
leaves the scheduler, kwok and the nodes out: pods stay Pending.

Standard library only, so `hack/cluster` runs before any virtualenv exists.
The pytest fixtures import this module; nothing shells out to `hack/cluster`.

Layout of the data directory (default `.cluster/` at the repository root):

    bin/            kubectl, etcd, kube-apiserver, kube-controller-manager,
                    kube-scheduler (symlinks to the multi-call binary), kwok
    pki/            CA, serving cert, service-account key pair, tokens
    etcd/           etcd data (survives an apiserver restart)
    logs/           one log file per process
    state.json      ports and process ids of the running cluster
    kubeconfig      admin credential (system:masters)
    operator.kubeconfig  the operator's identity (user agent-operator)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / ".cluster"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
# What runs pods on the simulated nodes; left out with nodes=False.
NODE_COMPONENTS = ("kube-scheduler", "kwok")
# Stop order: the apiserver's etcd client keeps retrying if etcd goes first.
STOP_ORDER = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
# The simulated nodes, all managed by one kwok.
NODE_NAMES = ("kwok-node-0",)
# Pods per node: room for every test's pods, while a test that asks for tens of
# thousands of replicas (test_spec_fuzz) gets a few hundred running and the rest
# Pending, instead of kwok and the scheduler simulating them all.
NODE_PODS = 300
# Wide enough for the fuzz and scale tests' Services (a /24 runs out at ~250).
DEFAULT_SERVICE_CIDR = "10.0.0.0/16"

# Logs every request that changes something, so tests can count an
# operator's writes (RequestReceived would double-count), and every request of
# a ServiceAccount or of user agent-operator, reads too: a refused read shows,
# and benchmarks count requests per verb.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: Metadata
    users: [agent-operator]
  - level: Metadata
    userGroups: [system:serviceaccounts]
  - level: None
"""


# user -> groups of the static token identities. The scheduler has exactly the
# bootstrap RBAC of its user name; kwok writes nodes', pods' and leases' status.
USERS = {
    "admin": "system:masters",
    "system:kube-controller-manager": "system:masters",
    "agent-operator": "system:masters",
    "system:kube-scheduler": "",
    "kwok": "system:masters",
}


class ClusterError(RuntimeError):
    """The control plane could not be built, started or reached."""


def node_manifest(name: str, index: int) -> dict[str, object]:
    """A Node for kwok to simulate (index: its place in NODE_NAMES). Its status is
    kept on create, and kwok keeps capacity and allocatable as given."""
    capacity = {"cpu": "1000", "memory": "4Ti", "ephemeral-storage": "4Ti", "pods": str(NODE_PODS)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        # kwok hands out pod IPs from the node's range, apart from the Services'.
        "spec": {"podCIDR": f"10.{128 + index}.0.0/16"},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


@dataclass
class State:
    """Ports and process ids of one cluster, persisted in state.json."""

    etcd_port: int
    etcd_peer_port: int
    apiserver_port: int
    controller_manager_port: int
    pids: dict[str, int] = field(default_factory=dict)
    # Fixed at creation: etcd keeps the Services' IPs, so a restart reuses it.
    service_cidr: str = DEFAULT_SERVICE_CIDR
    # 0: not chosen yet (a state.json written before the scheduler existed).
    scheduler_port: int = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0): reap it if it is one.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _build(name: str) -> Path:
    """Run hack/<name>, which builds (or finds in the user-level cache) one binary."""
    script = REPO / "hack" / name
    result = subprocess.run([str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise ClusterError(f"{script} failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


def build_kwok() -> Path:
    """Build (or find in the user-level cache) kwok; its stages.yaml lies beside it."""
    return _build("build-kwok")


def build_binary() -> Path:
    """Build (or find in the user-level cache) the multi-call binary, and kwok too:
    each takes minutes cold, which must not count against a test's timeout."""
    build_kwok()
    return _build("build-controlplane")


class Cluster:
    """One local control plane rooted at a data directory."""

    def __init__(
        self, root: Path = DEFAULT_DIR, service_cidr: str = DEFAULT_SERVICE_CIDR, nodes: bool = True
    ) -> None:
        """service_cidr: the Services' IP range of a cluster created here (a /24 holds
        about 250 Services); an existing cluster keeps the range in its state.json.
        nodes: run kube-scheduler and kwok with simulated nodes, so pods run."""
        self.root = root.resolve()
        self.service_cidr = service_cidr
        self.nodes = nodes
        self.bin = self.root / "bin"
        self.pki = self.root / "pki"
        self.logs = self.root / "logs"
        self.kubeconfig = self.root / "kubeconfig"
        self.kcm_kubeconfig = self.root / "kcm.kubeconfig"
        self.scheduler_kubeconfig = self.root / "scheduler.kubeconfig"
        self.kwok_kubeconfig = self.root / "kwok.kubeconfig"
        # The operator's own identity, so the audit log can single out its writes.
        self.operator_kubeconfig = self.root / "operator.kubeconfig"
        self.audit_log = self.logs / "audit.log"
        self.state_file = self.root / "state.json"

    # -- public commands -------------------------------------------------

    def up(self, timeout: float = 120.0) -> bool:
        """Start the cluster unless it already runs; True if it was started.

        A running cluster gets its nodes (scheduler, kwok, Node objects) added or
        removed to match `nodes`, and stays the caller's to stop: False."""
        state = self._load_state()
        if state and self._running(state, COMPONENTS) and self._ready(state, timeout=5):
            self._match_nodes(state, timeout, prepared=False)
            return False
        if state:
            self._stop(state)
        self._prepare()
        state = state or State(
            free_port(), free_port(), free_port(), free_port(), service_cidr=self.service_cidr
        )
        # Reuse the saved ports when free: etcd's member record keeps its peer URL.
        for name in (
            "etcd_port",
            "etcd_peer_port",
            "apiserver_port",
            "controller_manager_port",
            "scheduler_port",
        ):
            if not getattr(state, name) or port_open(getattr(state, name)):
                setattr(state, name, free_port())
        state.pids = {}
        self._save_state(state)
        self._start("etcd", state)
        self._wait(lambda: port_open(state.etcd_port), "etcd", timeout)
        self._start("kube-apiserver", state)
        self._wait(lambda: self._ready(state, timeout=2), "kube-apiserver /readyz", timeout)
        self._write_kubeconfig(state)
        self._start("kube-controller-manager", state)
        self._match_nodes(state, timeout, prepared=True)
        return True

    def _match_nodes(self, state: State, timeout: float, prepared: bool) -> None:
        """Start the scheduler, kwok and the nodes (nodes=True), or stop them and delete
        the nodes (nodes=False), on a running control plane; `prepared`: _prepare ran."""
        if not self.nodes:
            for name in NODE_COMPONENTS:
                self._stop_one(name, state)
            # Pods bound to a node nobody simulates would never finish deleting;
            # without the node, the pod garbage collector removes them.
            self.kubectl("delete", "node", *NODE_NAMES, "--ignore-not-found")
            return
        if self._running(state, NODE_COMPONENTS):
            return
        if not prepared and self._prepare():
            # A cluster from before these identities: the apiserver reads its token
            # file only at start.
            print(
                "restarting kube-apiserver to load the scheduler's and kwok's tokens",
                file=sys.stderr,
            )
            self.restart_apiserver(timeout)
            state = self._require_state()
        if not state.scheduler_port or port_open(state.scheduler_port):
            state.scheduler_port = free_port()
        self._write_kubeconfig(state)
        for name in NODE_COMPONENTS:
            if not (name in state.pids and pid_alive(state.pids[name])):
                self._start(name, state)
        self._create_nodes(timeout)

    def _create_nodes(self, timeout: float) -> None:
        """Create the simulated Node objects (kept if they exist) and wait until kwok
        reports them Ready."""
        for index, name in enumerate(NODE_NAMES):
            created = self.kubectl(
                "create", "-f", "-", input=json.dumps(node_manifest(name, index)), check=False
            )
            if created.returncode != 0 and "AlreadyExists" not in created.stderr:
                raise ClusterError(f"cannot create node {name}: {created.stderr.strip()}")
            # Admission (TaintNodesByCondition) taints a new node not-ready; the node
            # lifecycle controller, which would lift it, stays off (see _command).
            self.kubectl("patch", "node", name, "--type=merge", "-p", '{"spec":{"taints":null}}')
        self._wait(self._nodes_ready, f"nodes {', '.join(NODE_NAMES)} Ready", timeout)

    def _nodes_ready(self) -> bool:
        listed = self.kubectl("get", "nodes", "-o", "json", check=False)
        if listed.returncode != 0:
            return False
        ready = {
            node["metadata"]["name"]
            for node in json.loads(listed.stdout)["items"]
            for cond in (node.get("status") or {}).get("conditions") or []
            if cond.get("type") == "Ready" and cond.get("status") == "True"
        }
        return ready >= set(NODE_NAMES)

    def down(self) -> None:
        """Stop every process of the cluster; keeps the data directory."""
        state = self._load_state()
        if state:
            self._stop(state)
            state.pids = {}
            self._save_state(state)

    def status(self) -> dict[str, object]:
        state = self._load_state()
        if not state:
            return {"running": False}
        procs = {name: pid_alive(pid) for name, pid in state.pids.items()}
        return {
            "running": bool(procs) and all(procs.values()),
            "ready": self._ready(state, timeout=2) if procs.get("kube-apiserver") else False,
            "server": self.server(state),
            "processes": procs,
            "kubeconfig": str(self.kubeconfig),
        }

    def restart_apiserver(self, timeout: float = 120.0) -> None:
        """Stop the apiserver and start it again on the same port and etcd data."""
        state = self._require_state()
        self._stop_one("kube-apiserver", state)
        self._start("kube-apiserver", state)
        self._wait(lambda: self._ready(state, timeout=2), "kube-apiserver /readyz", timeout)

    def stop_apiserver(self) -> None:
        self._stop_one("kube-apiserver", self._require_state())

    def start_apiserver(self, timeout: float = 120.0) -> None:
        state = self._require_state()
        self._start("kube-apiserver", state)
        self._wait(lambda: self._ready(state, timeout=2), "kube-apiserver /readyz", timeout)

    def kill_apiserver(self, timeout: float = 120.0) -> None:
        """SIGKILL the apiserver (no graceful shutdown: a crash, an OOM kill) and start
        it again on the same port and etcd data; returns once it is ready."""
        state = self._require_state()
        self._kill_one("kube-apiserver", state)
        self._start("kube-apiserver", state)
        self._wait(lambda: self._ready(state, timeout=2), "kube-apiserver /readyz", timeout)

    def restart_etcd(
        self, kill: bool = False, down_seconds: float = 0.0, timeout: float = 120.0
    ) -> None:
        """Stop etcd (SIGTERM, or SIGKILL with `kill`), leave it down `down_seconds`,
        start it again on the same ports and data directory; returns once the
        apiserver is ready again."""
        state = self._require_state()
        if kill:
            self._kill_one("etcd", state)
        else:
            self._stop_one("etcd", state)
        time.sleep(down_seconds)
        self._start("etcd", state)
        self._wait(lambda: port_open(state.etcd_port), "etcd", timeout)
        self._wait(lambda: self._ready(state, timeout=2), "kube-apiserver /readyz", timeout)

    def _kill_one(self, name: str, state: State) -> None:
        """SIGKILL one process and wait until it is gone."""
        pid = state.pids.pop(name, None)
        self._save_state(state)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.05)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the project's kubectl against this cluster."""
        cmd = [str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def service_account_kubeconfig(
        self, namespace: str, account: str, path: Path, duration: str = "2h"
    ) -> Path:
        """Write a kubeconfig holding a TokenRequest token of ServiceAccount `account`
        (what a pod of it would hold): exactly that account's RBAC."""
        token = self.kubectl(
            "-n", namespace, "create", "token", account, "--duration", duration
        ).stdout.strip()
        config = json.loads(self.kubeconfig.read_text())
        config["users"] = [{"name": account, "user": {"token": token}}]
        config["contexts"] = [{"name": "local", "context": {"cluster": "local", "user": account}}]
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def server(self, state: State | None = None) -> str:
        state = state or self._require_state()
        return f"https://127.0.0.1:{state.apiserver_port}"

    def ports(self) -> list[int]:
        state = self._require_state()
        ports = [
            state.etcd_port,
            state.etcd_peer_port,
            state.apiserver_port,
            state.controller_manager_port,
        ]
        return ports + ([state.scheduler_port] if "kube-scheduler" in state.pids else [])

    def pids(self) -> dict[str, int]:
        return dict(self._require_state().pids)

    # -- setup -------------------------------------------------------------

    def _prepare(self) -> bool:
        """Binaries, links, PKI; True if identities were added to an existing token file."""
        binary = _build("build-controlplane")
        links = {name: binary for name in ("kubectl", *COMPONENTS, "kube-scheduler")}
        if self.nodes:
            links["kwok"] = build_kwok()
        for d in (self.bin, self.pki, self.logs, self.root / "etcd"):
            d.mkdir(parents=True, exist_ok=True)
        for name, target in links.items():
            link = self.bin / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target)
        (self.root / "audit-policy.yaml").write_text(AUDIT_POLICY)
        if not (self.pki / "tokens.csv").exists():
            self._make_pki()
        return self._add_tokens()

    def _make_pki(self) -> None:
        pki = self.pki

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True)

        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=agent-operator-local-ca",
        )
        (pki / "serving.ext").write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        )
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "serving.key",
            "-out",
            "serving.csr",
            "-subj",
            "/CN=kube-apiserver",
        )
        openssl(
            "x509",
            "-req",
            "-in",
            "serving.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-out",
            "serving.crt",
            "-extfile",
            "serving.ext",
        )
        openssl("genrsa", "-out", "sa.key", "2048")
        openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        (pki / "tokens.csv").touch()
        for f in pki.iterdir():
            f.chmod(0o600)

    def _add_tokens(self) -> bool:
        """Give each of USERS missing from tokens.csv a token; True if any was added.
        One identity per client, so the audit log tells whose write it was."""
        tokens = self.pki / "tokens.csv"
        known = {row.split(",")[1] for row in tokens.read_text().splitlines() if row}
        rows = []
        for user, groups in USERS.items():
            if user in known:
                continue
            token = secrets.token_hex(24)
            path = self.pki / f"{user}.token"
            path.write_text(token)
            path.chmod(0o600)
            rows.append(f'{token},{user},{user},"{groups}"' if groups else f"{token},{user},{user}")
        with tokens.open("a") as out:
            out.writelines(row + "\n" for row in rows)
        return bool(rows)

    def _write_kubeconfig(self, state: State) -> None:
        for path, user in (
            (self.kubeconfig, "admin"),
            (self.kcm_kubeconfig, "system:kube-controller-manager"),
            (self.operator_kubeconfig, "agent-operator"),
            (self.scheduler_kubeconfig, "system:kube-scheduler"),
            (self.kwok_kubeconfig, "kwok"),
        ):
            token = (self.pki / f"{user}.token").read_text().strip()
            config = {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "local",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {
                            "server": self.server(state),
                            "certificate-authority": str(self.pki / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            }
            path.write_text(json.dumps(config, indent=2))
            path.chmod(0o600)

    def _command(self, name: str, state: State) -> list[str]:
        pki = self.pki
        if name == "etcd":
            peer = f"http://127.0.0.1:{state.etcd_peer_port}"
            client = f"http://127.0.0.1:{state.etcd_port}"
            return [
                str(self.bin / "etcd"),
                "--name=local",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--listen-metrics-urls=",
                # A throwaway test store: durability across power loss is not needed.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]
        if name == "kube-apiserver":
            return [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{state.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={state.apiserver_port}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={state.service_cidr}",
                "--authorization-mode=RBAC",
                "--endpoint-reconciler-type=none",
                f"--audit-policy-file={self.root / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                # One file for the cluster's life (default: rotated at 100 MB), so tests
                # and benchmarks that read it from an offset never lose their place.
                "--audit-log-maxsize=1000000",
                "--audit-log-mode=blocking",
                "--shutdown-delay-duration=0s",
            ]
        if name == "kube-controller-manager":
            kubeconfig = str(self.kcm_kubeconfig)
            return [
                str(self.bin / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                # No front proxy here: do not look up its request-header CA.
                "--authentication-skip-lookup",
                "--bind-address=127.0.0.1",
                f"--secure-port={state.controller_manager_port}",
                # No cloud: nodes get their pod CIDR at creation, not from IPAM. The
                # lifecycle controller would evict the simulated nodes' pods when kwok's
                # heartbeats stall (an apiserver restart in a fault test).
                "--controllers=*,-node-ipam-controller,-node-lifecycle-controller",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--leader-elect=false",
            ]
        if name == "kube-scheduler":
            kubeconfig = str(self.scheduler_kubeconfig)
            return [
                str(self.bin / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--authentication-skip-lookup",
                "--bind-address=127.0.0.1",
                f"--secure-port={state.scheduler_port}",
                "--leader-elect=false",
            ]
        if name == "kwok":
            binary = self.bin / "kwok"
            return [
                str(binary),
                f"--kubeconfig={self.kwok_kubeconfig}",
                # The module's own stage definitions, cached beside the binary.
                f"--config={binary.resolve().parent / 'stages.yaml'}",
                "--manage-all-nodes=true",
            ]
        raise ValueError(name)

    # -- processes ---------------------------------------------------------

    def _start(self, name: str, state: State) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            self._command(name, state),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        state.pids[name] = proc.pid
        self._save_state(state)

    def _stop_one(self, name: str, state: State, timeout: float = 20.0) -> None:
        pid = state.pids.pop(name, None)
        self._save_state(state)
        if pid is None or not pid_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)

    def _stop(self, state: State) -> None:
        for name in STOP_ORDER:
            self._stop_one(name, state)

    def _running(self, state: State, names: tuple[str, ...]) -> bool:
        return all(name in state.pids and pid_alive(state.pids[name]) for name in names)

    def _ready(self, state: State, timeout: float) -> bool:
        token_file = self.pki / "admin.token"
        if not token_file.exists():
            return False
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        req = urllib.request.Request(
            f"{self.server(state)}/readyz",
            headers={"Authorization": f"Bearer {token_file.read_text().strip()}"},
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _wait(self, ok: object, what: str, timeout: float) -> None:
        assert callable(ok)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            time.sleep(0.2)
        raise ClusterError(f"{what} not ready after {timeout:.0f}s; logs in {self.logs}")

    # -- state -------------------------------------------------------------

    def _load_state(self) -> State | None:
        try:
            return State(**json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def _require_state(self) -> State:
        state = self._load_state()
        if state is None:
            raise ClusterError(f"no cluster in {self.root}: run hack/cluster up")
        return state

    def _save_state(self, state: State) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(self.state_file)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="hack/cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="data directory")
    parser.add_argument(
        "--no-nodes",
        action="store_true",
        help="up: no kube-scheduler, kwok or nodes (pods stay Pending)",
    )
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir, nodes=not args.no_nodes)
    try:
        if args.command == "up":
            started = cluster.up()
            print("started" if started else "already running", file=sys.stderr)
            print(f"kubeconfig: {cluster.kubeconfig}", file=sys.stderr)
            print(f"kubectl:    {cluster.bin / 'kubectl'}", file=sys.stderr)
            print(cluster.kubeconfig.read_text())
        elif args.command == "down":
            cluster.down()
            print("stopped", file=sys.stderr)
        else:
            status = cluster.status()
            print(json.dumps(status, indent=2))
            return 0 if status.get("running") else 1
    except ClusterError as err:
        print(f"hack/cluster: {err}", file=sys.stderr)
        return 1
    return 0
