"""The local control plane is a real one: controllers run, garbage
collection works, pods are scheduled and run on simulated nodes, data
survives an apiserver restart, `hack/cluster` is idempotent and leaves
nothing behind."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from localcluster import NODE_NAMES, NODE_PODS, REPO, Cluster, pid_alive, port_open


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


def test_nodes_are_ready_and_run_pods(cluster: Cluster, namespace: str) -> None:
    nodes = get_json(cluster, "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(NODE_NAMES)
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert ready["Ready"] == "True"
        assert node["status"]["allocatable"]["pods"] == str(NODE_PODS)
        assert not node["spec"].get("taints"), "a taint keeps pods off the node"
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "deployment",
        "web",
        "--image=example.invalid/web:1",
        "--replicas=2",
    )
    cluster.kubectl(
        "-n", namespace, "rollout", "status", "deployment/web", "--timeout=60s", timeout=90
    )
    pods = get_json(cluster, "-n", namespace, "pods", "-l", "app=web")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] in NODE_NAMES  # bound by the scheduler
        assert pod["status"]["phase"] == "Running" and pod["status"]["podIP"]
    # A bound pod's deletion waits for its node: kwok finishes it, the ReplicaSet replaces it.
    gone = pods[0]["metadata"]["name"]
    cluster.kubectl("-n", namespace, "delete", "pod", gone, "--timeout=30s", timeout=60)
    wait_for(
        lambda: (
            len(p := get_json(cluster, "-n", namespace, "pods", "-l", "app=web")["items"]) == 2
            and gone not in {x["metadata"]["name"] for x in p}
            and all(x["status"].get("phase") == "Running" for x in p)
        ),
        60,
        "a replacement pod Running",
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


CORE = {"etcd", "kube-apiserver", "kube-controller-manager"}
NEW_USERS = {"system:kube-scheduler", "kwok"}


@pytest.mark.parametrize(
    ("flags", "components", "nodes"),
    [((), CORE | {"kube-scheduler", "kwok"}, sorted(NODE_NAMES)), (("--no-nodes",), CORE, [])],
    ids=["nodes", "no-nodes"],
)
def test_cluster_cli_is_idempotent_and_down_leaves_nothing(
    tmp_path: Path, flags: tuple[str, ...], components: set[str], nodes: list[str]
) -> None:
    data = tmp_path / "cluster"
    first = run_cli("up", "--dir", str(data), *flags)
    assert first.returncode == 0, first.stderr
    assert "started" in first.stderr
    other = Cluster(data)
    pids, ports = other.pids(), other.ports()
    assert set(pids) == components

    try:
        second = run_cli("up", "--dir", str(data), *flags)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert other.pids() == pids
        assert json.loads(run_cli("status", "--dir", str(data)).stdout)["ready"] is True
        ready = other.kubectl("get", "--raw", "/readyz")
        assert ready.stdout.strip() == "ok"
        listed = get_json(other, "nodes")["items"]
        assert sorted(n["metadata"]["name"] for n in listed) == nodes
    finally:
        down = run_cli("down", "--dir", str(data))

    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not any(port_open(port) for port in ports)
    assert run_cli("status", "--dir", str(data)).returncode == 1


def test_a_cluster_from_before_the_nodes_gets_them_added(tmp_path: Path) -> None:
    """A running cluster whose state.json and token file predate the scheduler and
    kwok keeps its etcd and data; up adds the nodes, up --no-nodes takes them out."""
    data = tmp_path / "cluster"
    old = Cluster(data, nodes=False)
    try:
        old.up()
        old.kubectl("create", "configmap", "kept", "--from-literal=k=v")
        # What a cluster made before the nodes has: no scheduler port, no identities
        # for the scheduler and kwok.
        state = json.loads((data / "state.json").read_text())
        del state["scheduler_port"]
        (data / "state.json").write_text(json.dumps(state))
        tokens = data / "pki" / "tokens.csv"
        rows = [r for r in tokens.read_text().splitlines() if r.split(",")[1] not in NEW_USERS]
        tokens.write_text("".join(row + "\n" for row in rows))
        before = old.pids()

        assert Cluster(data).up() is False  # it was running: still its owner's to stop
        pids = old.pids()
        assert set(pids) == CORE | {"kube-scheduler", "kwok"}
        assert pids["etcd"] == before["etcd"]
        # restarted to read the new identities
        assert pids["kube-apiserver"] != before["kube-apiserver"]
        assert get_json(old, "configmap", "kept")["data"] == {"k": "v"}
        nodes = get_json(old, "nodes")["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == sorted(NODE_NAMES)

        assert Cluster(data, nodes=False).up() is False
        assert set(old.pids()) == CORE
        assert not pid_alive(pids["kwok"]) and not pid_alive(pids["kube-scheduler"])
        assert get_json(old, "nodes")["items"] == []
    finally:
        old.down()
