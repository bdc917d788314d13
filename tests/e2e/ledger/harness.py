"""Gateways of one AgentDeployment, run as local processes the way their pods run them.

The command line, the environment and the volumes come from the live
Deployment the operator wrote; the pods are the real pods its ReplicaSet
created (Running on a simulated node: kwok starts no container). Each
gateway gets its pod's identity the way the kubelet gives it: the
downward-API env resolved from that pod, and a service-account token of
`<agent>-gateway` bound to that pod (TokenRequest), with the cluster's CA
beside it. Only what a pod provides differently is remapped: mount dirs
(laid out like the kubelet's) and listen ports, and
KUBERNETES_SERVICE_HOST/PORT point at the local API server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from tests.e2e.hostile.harness import GATEWAY_BIN, free_port
from tests.fakes.volumes import KubeVolume

from agent_operator.ledger import gateway_identity
from agent_operator.sidecar import (
    BUDGET_DIR,
    CLIENT_KEYS_DIR,
    CREDENTIALS_DIR,
    SERVICE_ACCOUNT_DIR,
    SPEND_JOURNAL_DIR,
)
from localcluster import Cluster

AGENT_LABEL = "agents.dev/agent"


def kube_json(cluster: Cluster, namespace: str, *what: str) -> Any:
    result = cluster.kubectl("-n", namespace, "get", *what, "-o", "json")
    return json.loads(result.stdout)


def live_pods(cluster: Cluster, namespace: str, agent: str) -> list[tuple[str, str]]:
    """(name, uid) of the agent's pods that are not being deleted, oldest first."""
    pods = kube_json(cluster, namespace, "pods", "-l", f"{AGENT_LABEL}={agent}")["items"]
    pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    pods.sort(key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
    return [(p["metadata"]["name"], p["metadata"]["uid"]) for p in pods]


def pod_token(cluster: Cluster, namespace: str, agent: str, pod: str, uid: str) -> str:
    """A token of the gateway's service account bound to `pod`, as the kubelet projects it."""
    result = cluster.kubectl(
        "-n",
        namespace,
        "create",
        "token",
        gateway_identity(agent),
        "--bound-object-kind=Pod",
        f"--bound-object-name={pod}",
        f"--bound-object-uid={uid}",
        "--duration=1h",
    )
    return str(result.stdout).strip()


def _secret_files(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    data = kube_json(cluster, namespace, "secret", name).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _remap(argv: list[str], values: dict[str, str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in values and i + 1 < len(argv):
            out += [arg, values[arg]]
            i += 2
            continue
        name = arg.split("=", 1)[0]
        out.append(f"{name}={values[name]}" if "=" in arg and name in values else arg)
        i += 1
    return out


@dataclass
class PodGateway:
    """One gateway process standing in for one pod."""

    pod: str
    uid: str
    directory: Path
    command: list[str]
    env: dict[str, str]
    outbound_port: int
    admin_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def outbound_url(self) -> str:
        return f"http://127.0.0.1:{self.outbound_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "gateway.log"

    @property
    def journal(self) -> Path:
        return self.directory / "journal"

    def output(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    async def start(self, timeout: float = 30.0) -> None:
        """Start (or restart, as the kubelet restarts a container) and wait for /readyz."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gateway {self.pod} exited:\n{self.output()[-4000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.admin_url + "/readyz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"gateway {self.pod} not ready:\n{self.output()[-4000:]}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    async def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def pod_gateway(
    cluster: Cluster, namespace: str, agent: str, pod: str, uid: str, root: Path
) -> PodGateway:
    """The gateway of `pod`, set up as the kubelet would set up its container (not started)."""
    deployment = kube_json(cluster, namespace, "deployment", agent)
    pod_spec = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod_spec["containers"] if c["name"] == "gateway")
    directory = root / pod
    directory.mkdir(parents=True, exist_ok=True)
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    volumes: dict[str, str] = {}
    if CREDENTIALS_DIR in mounts:
        creds = _secret_files(cluster, namespace, f"{agent}-credentials")
        volumes["--credentials-dir"] = str(KubeVolume(directory / "credentials", creds).path)
    if CLIENT_KEYS_DIR in mounts:
        keys = _secret_files(cluster, namespace, f"{agent}-client-keys")
        volumes["--client-keys-dir"] = str(KubeVolume(directory / "client-keys", keys).path)
    if BUDGET_DIR in mounts:
        data = kube_json(cluster, namespace, "configmap", f"{agent}-budget")["data"]
        volumes["--budget-dir"] = str(KubeVolume(directory / "budget", data).path)
    assert SERVICE_ACCOUNT_DIR in mounts, "the gateway container mounts its own token"
    account = directory / "serviceaccount"
    account.mkdir(exist_ok=True)
    (account / "token").write_text(pod_token(cluster, namespace, agent, pod, uid))
    shutil.copy(cluster.pki / "ca.crt", account / "ca.crt")
    (account / "namespace").write_text(namespace)
    volumes["--service-account-dir"] = str(account)
    if SPEND_JOURNAL_DIR in mounts:
        (directory / "journal").mkdir(exist_ok=True)
        volumes["--spend-journal-dir"] = str(directory / "journal")
    outbound, inbound, admin = free_port(), free_port(), free_port()
    volumes.update(
        {
            "--inbound-listen": f"127.0.0.1:{inbound}",
            "--outbound-listen": f"127.0.0.1:{outbound}",
            "--admin-listen": f"127.0.0.1:{admin}",
        }
    )
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[:2] == ["agent-operator", "gateway"], argv
    command = [str(GATEWAY_BIN), *_remap(argv[1:], volumes)]
    for flag in ("--service-account-dir", "--spend-journal-dir"):
        if flag in volumes and flag not in command:
            command += [flag, volumes[flag]]  # at their defaults: not rendered
    downward = {"metadata.name": pod, "metadata.uid": uid, "metadata.namespace": namespace}
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = downward[item["valueFrom"]["fieldRef"]["fieldPath"]]
    server = cluster.server()
    env["KUBERNETES_SERVICE_HOST"] = "127.0.0.1"
    env["KUBERNETES_SERVICE_PORT"] = server.rsplit(":", 1)[1]
    env["AGENT_GATEWAY_RELOAD_INTERVAL_SECONDS"] = "0.2"
    return PodGateway(pod, uid, directory, command, env, outbound, admin)


def ledger_total(cluster: Cluster, namespace: str, agent: str) -> dict[str, float]:
    """USD per period key, from the SpendRecords as the operator and gateways sum them."""
    from agent_operator.ledger import parse_record, totals

    items = kube_json(cluster, namespace, "spendrecords", "-l", f"{AGENT_LABEL}={agent}")
    specs = [s for s in (parse_record(i) for i in items["items"]) if s is not None]
    return totals(specs, agent)
