"""The local control plane is a real one: controllers run, garbage
collection works, data survives an apiserver restart, `hack/cluster` is
idempotent and leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from localcluster import REPO, Cluster, pid_alive, port_open


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def get_json(cluster: Cluster, *args: str) -> dict:  # type: ignore[type-arg]
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def test_server_version_is_the_pinned_release(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.37.2"
    assert version["clientVersion"]["gitVersion"] == "v1.37.2"


def test_replicaset_and_garbage_collection(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("-n", namespace, "create", "configmap", "owner", "--from-literal=a=b")
    owner = get_json(cluster, "-n", namespace, "configmap", "owner")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "owned",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "owned"}},
            "template": {
                "metadata": {"labels": {"app": "owned"}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/app:1"}]},
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(deployment))

    # The deployment controller in kube-controller-manager creates a ReplicaSet.
    replicasets = wait_for(
        lambda: get_json(cluster, "-n", namespace, "replicasets")["items"],
        60,
        "a ReplicaSet of the Deployment",
    )
    assert replicasets[0]["metadata"]["ownerReferences"][0]["name"] == "owned"

    cluster.kubectl("-n", namespace, "delete", "configmap", "owner")
    wait_for(
        lambda: (
            cluster.kubectl("-n", namespace, "get", "deployment", "owned", check=False).returncode
            != 0
        ),
        30,
        "garbage collection of the Deployment",
    )


def test_data_survives_apiserver_restart(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("-n", namespace, "create", "configmap", "keep", "--from-literal=k=v1")
    before = cluster.pids()["kube-apiserver"]

    cluster.restart_apiserver()

    assert cluster.pids()["kube-apiserver"] != before
    assert not pid_alive(before)
    kept = get_json(cluster, "-n", namespace, "configmap", "keep")
    assert kept["data"] == {"k": "v1"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "hack" / "cluster"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cluster_cli_is_idempotent_and_down_leaves_nothing(tmp_path: Path) -> None:
    data = tmp_path / "cluster"
    first = run_cli("up", "--dir", str(data))
    assert first.returncode == 0, first.stderr
    assert "started" in first.stderr
    other = Cluster(data)
    pids, ports = other.pids(), other.ports()
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}

    try:
        second = run_cli("up", "--dir", str(data))
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert other.pids() == pids
        assert json.loads(run_cli("status", "--dir", str(data)).stdout)["ready"] is True
        ready = other.kubectl("get", "--raw", "/readyz")
        assert ready.stdout.strip() == "ok"
    finally:
        down = run_cli("down", "--dir", str(data))

    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not any(port_open(port) for port in ports)
    assert run_cli("status", "--dir", str(data)).returncode == 1
