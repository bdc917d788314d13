"""Fixtures for tests against the real local control plane.

Like dask-kubernetes's conftest: one cluster per session (started here, or
reused when `hack/cluster up` already runs it), a fresh namespace per test.
A missing Go toolchain or a control plane that does not start is an error,
never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client, config

import helm  # hack/ is on pytest's pythonpath
from localcluster import DEFAULT_DIR, Cluster, build_binary

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane before any test runs when one needs it: a cold
    build takes minutes and must not count against a test's timeout."""
    if any("cluster" in getattr(item, "fixturenames", ()) for item in session.items):
        build_binary()


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    # Another data directory runs a second suite beside the first (on its own ports).
    local = Cluster(Path(os.environ.get("AGENT_OPERATOR_TEST_CLUSTER_DIR") or DEFAULT_DIR))
    started = local.up()
    yield local
    if started:
        local.down()


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --- the operator as a real process (issue 4) ----------------------------------

CRD_FILE = REPO / "crds" / "agentdeployments.agents.dev.yaml"
LEDGER_FILE = REPO / "crds" / "spendrecords.agents.dev.yaml"
PEERING_CRDS = REPO / "crds" / "kopf-peering.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ChartIdentity:
    """The Helm chart installed for one namespace (namespaced mode, peering on, as
    `watchNamespaces: [namespace]` renders it): its ServiceAccount is who the test's
    operators run as, so every e2e test exercises the chart's RBAC, nothing more."""

    def __init__(self, cluster: Cluster, namespace: str, kubeconfig: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.release = namespace  # unique: the ClusterRole and its binding carry it
        self.account = f"{self.release}-agent-operator"
        self.user = f"system:serviceaccount:{namespace}:{self.account}"
        self._kubeconfig = kubeconfig
        self._audit_offset = 0
        self._counted_from = ""  # refusals received earlier are not the chart's doing

    def not_before(self, when: float) -> None:
        """Count refusals received from `when` on: a restarting API server refuses
        everyone until its RBAC cache has synced, whatever the chart grants."""
        self._counted_from = datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")

    def install(self) -> Path:
        """Install the release (once) and return a kubeconfig of its ServiceAccount."""
        if not self._kubeconfig.exists():
            self._audit_offset = self.cluster.audit_log.stat().st_size
            helm.run(
                "install",
                self.release,
                str(helm.CHART),
                "--namespace",
                self.namespace,
                "--set",
                f"watchNamespaces={{{self.namespace}}}",
                # The policy comes with crds/ (the agent_crd fixture): not this release's.
                "--set",
                "spendRecordPolicy.create=false",
                kubeconfig=self.cluster.kubeconfig,
            )
            self.cluster.service_account_kubeconfig(self.namespace, self.account, self._kubeconfig)
        return self._kubeconfig

    def refused(self) -> list[str]:
        """The requests of this identity that authorization refused, from the audit log
        (a 403 from admission, e.g. a ResourceQuota, is not RBAC's and not counted)."""
        if not self._kubeconfig.exists():
            return []
        with self.cluster.audit_log.open() as log:
            log.seek(self._audit_offset)
            entries = [json.loads(line) for line in log if f'"{self.user}"' in line]
        return [
            f"{e['verb']} {e['requestURI']}"
            for e in entries
            if e["user"]["username"] == self.user
            and (e.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid"
            and e["requestReceivedTimestamp"] >= self._counted_from
        ]

    def uninstall(self) -> None:
        if self._kubeconfig.exists():
            helm.run(
                "uninstall",
                self.release,
                "--namespace",
                self.namespace,
                "--ignore-not-found",
                kubeconfig=self.cluster.kubeconfig,
            )


class OperatorProcess:
    """`agent-operator run` in a subprocess scoped to a namespace, as `kubeconfig`'s user
    (the test's chart ServiceAccount)."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        log_path: Path,
        *extra: str,
        kubeconfig: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.env = dict(env or {})  # on top of ours, e.g. AGENT_OPERATOR_CLOCK_OFFSET_SECONDS
        self.namespace = namespace
        self.log_path = log_path
        # Without --peering in `extra`, one replica alone: --standalone.
        self.extra = extra if "--peering" in extra else ("--standalone", *extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.health_port = 0

    def start(self, timeout: float = 30.0) -> None:
        self.metrics_port, self.health_port = _free_port(), _free_port()
        command = [
            str(Path(sys.executable).parent / "agent-operator"),
            "run",
            "--namespace",
            self.namespace,
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
            *self.extra,
        ]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.logs()}")
            with contextlib.suppress(OSError):  # not listening yet
                url = f"http://127.0.0.1:{self.health_port}/healthz"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            time.sleep(0.2)
        raise RuntimeError(f"operator not healthy after {timeout}s:\n{self.logs()}")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    def readyz(self) -> tuple[int, str]:
        """Status and text of /readyz; (0, why) when it does not answer."""
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError as err:
            return 0, str(err)

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def agent_crd(cluster: Cluster) -> None:
    """The AgentDeployment and SpendRecord CRDs (and the ledger's admission policy),
    installed as users install them (server-side apply)."""
    for path in (CRD_FILE, LEDGER_FILE):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/agentdeployments.agents.dev",
        "crd/spendrecords.agents.dev",
    )


@pytest.fixture
def chart_identity(
    cluster: Cluster, agent_crd: None, peering_crds: None, namespace: str, tmp_path: Path
) -> Iterator[ChartIdentity]:
    """The chart's identity for the test's namespace; the test fails if it was refused
    anything (the chart's RBAC lacks a permission the code uses)."""
    identity = ChartIdentity(cluster, namespace, tmp_path / "operator.kubeconfig")
    yield identity
    refused = identity.refused()
    identity.uninstall()
    assert not refused, f"the chart's RBAC refused the operator: {refused[:5]}"


@pytest.fixture
def make_operator(
    cluster: Cluster, chart_identity: ChartIdentity, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Builds (unstarted) operators for the test's namespace, running as the chart's
    ServiceAccount; stops them all at the end."""
    made: list[OperatorProcess] = []

    def make(
        log_name: str = "operator",
        *extra: str,
        env: Mapping[str, str] | None = None,
        kubeconfig: Path | None = None,
    ) -> OperatorProcess:
        """kubeconfig: another identity than the test's chart release (one the test made)."""
        process = OperatorProcess(
            cluster,
            namespace,
            tmp_path / f"{log_name}.log",
            *extra,
            kubeconfig=kubeconfig or chart_identity.install(),
            env=env,
        )
        made.append(process)
        return process

    yield make
    for process in made:
        process.stop()
        sys.stderr.write(
            f"\n--- {process.log_path.name} ({namespace}) ---\n{process.logs()[-20000:]}\n"
        )


@pytest.fixture
def operator_process(make_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    """A running operator watching only the test's namespace; its log is printed on failure."""
    process = make_operator()
    process.start()
    return process


@pytest.fixture(scope="session")
def peering_crds(cluster: Cluster) -> None:
    """kopf's KopfPeering CRDs, for tests of several operator replicas."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/kopfpeerings.kopf.dev",
        "crd/clusterkopfpeerings.kopf.dev",
    )
