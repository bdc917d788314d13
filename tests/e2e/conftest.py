"""Fixtures for tests against the real local control plane.

Like dask-kubernetes's conftest: one cluster per session (started here, or
reused when `hack/cluster up` already runs it), a fresh namespace per test.
A missing Go toolchain or a control plane that does not start is an error,
never a skip.
"""

from __future__ import annotations

import contextlib
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
from pathlib import Path

import pytest
from kubernetes import client, config

from localcluster import Cluster, build_binary  # hack/ is on pytest's pythonpath

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane before any test runs when one needs it: a cold
    build takes minutes and must not count against a test's timeout."""
    if any("cluster" in getattr(item, "fixturenames", ()) for item in session.items):
        build_binary()


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    local = Cluster()
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


class OperatorProcess:
    """`agent-operator run` in a subprocess, as the user agent-operator, scoped to a namespace."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        log_path: Path,
        *extra: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
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
        env = {**os.environ, "KUBECONFIG": str(self.cluster.operator_kubeconfig), **self.env}
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
def make_operator(
    cluster: Cluster, agent_crd: None, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Builds (unstarted) operators for the test's namespace; stops them all at the end."""
    made: list[OperatorProcess] = []

    def make(
        log_name: str = "operator", *extra: str, env: Mapping[str, str] | None = None
    ) -> OperatorProcess:
        process = OperatorProcess(cluster, namespace, tmp_path / f"{log_name}.log", *extra, env=env)
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
