"""The AgentDeployment API on a real kube-apiserver: the CRD installs, the
examples are accepted, invalid manifests are refused naming the field, every
rendered child passes a server-side dry run, and `kubectl get agd` shows the
printer columns."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.manifests import merge

from agent_operator.api import MAX_ENV_BYTES, AgentDeployment, InvalidSpec
from agent_operator.builders import desired_children
from agent_operator.render import render_manifest, to_yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "agentdeployments.agents.dev.yaml"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
TABLE = yaml.safe_load((REPO / "tests" / "unit" / "golden" / "invalid-manifests.yaml").read_text())


def in_namespace(manifest: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    return merge(manifest, {"metadata": {"namespace": namespace}})


def get_json(cluster: Any, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return result


@pytest.fixture(scope="module")
def crd(cluster: Any) -> dict[str, Any]:
    """The checked-in CRD, applied as users apply it, and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/agentdeployments.agents.dev"
    )
    return get_json(cluster, "crd", "agentdeployments.agents.dev")


def test_crd_installs(crd: dict[str, Any]) -> None:
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == ["agd"]
    assert crd["status"]["acceptedNames"]["categories"] == ["agents"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted_and_renders_as_offline(
    cluster: Any, crd: dict[str, Any], namespace: str, example: Path
) -> None:
    manifest = in_namespace(yaml.safe_load(example.read_text()), namespace)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))
    stored = get_json(cluster, "-n", namespace, "agd", manifest["metadata"]["name"])
    # The server's defaults are the models' defaults: the operator, reading
    # the stored object, builds exactly what `render` printed offline.
    live = desired_children(AgentDeployment.from_body(stored))
    offline = render_manifest(
        {**manifest, "metadata": {**manifest["metadata"], "uid": stored["metadata"]["uid"]}}
    )
    assert live == offline


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_rendered_children_pass_server_dry_run(
    cluster: Any, crd: dict[str, Any], namespace: str, example: Path
) -> None:
    manifest = in_namespace(yaml.safe_load(example.read_text()), namespace)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))
    stored = get_json(cluster, "-n", namespace, "agd", manifest["metadata"]["name"])
    children = desired_children(AgentDeployment.from_body(stored))
    result = cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=agent-operator",
        "-f",
        "-",
        input=to_yaml(children),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(children)


def test_longest_name_is_accepted_with_its_children(
    cluster: Any, crd: dict[str, Any], namespace: str
) -> None:
    name = "a" + "b" * 50
    manifest = merge(
        TABLE["base"],
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clientAuth": {"enabled": True}},
        },
    )
    cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))
    stored = get_json(cluster, "-n", namespace, "agd", name)
    children = desired_children(AgentDeployment.from_body(stored))
    result = cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        "-",
        input=to_yaml(children),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    too_long = merge(manifest, {"metadata": {"name": name + "c"}})
    refused = cluster.kubectl("create", "-f", "-", input=json.dumps(too_long), check=False)
    assert refused.returncode != 0
    assert "metadata.name" in refused.stderr


def test_env_too_large_as_a_whole_is_refused_online_and_offline(
    cluster: Any, crd: dict[str, Any], namespace: str
) -> None:
    """Each value within its bound, together too large for the Deployment that carries them."""
    env = [{"name": f"V{i}", "value": "\U0001d11e" * 32768} for i in range(5)]  # 5 x 128 KiB
    manifest = in_namespace(merge(TABLE["base"], {"spec": {"env": env}}), namespace)
    message = f"values must total at most {MAX_ENV_BYTES} bytes (UTF-8)"
    with pytest.raises(InvalidSpec) as offline:
        AgentDeployment.from_body(manifest)
    assert offline.value.errors == [f"spec.env: {message}"]
    result = cluster.kubectl("create", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert "spec.env" in result.stderr and message in result.stderr, result.stderr


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda c: c["id"])
def test_invalid_manifest_is_refused_naming_the_field(
    cluster: Any, crd: dict[str, Any], namespace: str, case: dict[str, Any]
) -> None:
    patch = {k: case[k] for k in ("metadata", "spec") if k in case}
    manifest = in_namespace(merge(TABLE["base"], patch), namespace)
    result = cluster.kubectl("create", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0, f"accepted: {case['id']}"
    assert case["field"] in result.stderr, result.stderr
    if "message" in case:
        assert case["message"] in result.stderr, result.stderr
    assert get_json(cluster, "-n", namespace, "agd")["items"] == []


def test_printer_columns_and_status_preservation(
    cluster: Any, crd: dict[str, Any], namespace: str
) -> None:
    manifest = in_namespace(
        yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text()), namespace
    )
    cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))
    rotated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7200))
    status = {
        "phase": "Ready",
        "readyReplicas": 2,
        "replicas": 2,
        "observedGeneration": 1,
        "budget": {
            "period": "day",
            "spentUSD": 12.4,
            "limitUSD": 50,
            "remainingUSD": 37.6,
            "exhausted": False,
        },
        "credentials": {"keyID": "key-1", "rotatedAt": rotated},
        # kopf keeps its own bookkeeping in status; it must not be pruned.
        "kopf": {"progress": {"reconcile": {"retries": 1}}},
    }
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "agd",
        "hello-agent",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    stored = get_json(cluster, "-n", namespace, "agd", "hello-agent")
    assert stored["status"]["kopf"] == status["kopf"]
    assert AgentDeployment.from_body(stored).status.ready_replicas == 2

    table = cluster.kubectl("-n", namespace, "get", "agd").stdout.splitlines()
    header, row = table[0].split(), table[1].split()
    assert header == ["NAME", "READY", "PHASE", "SPENT", "LIMIT", "KEY", "AGE", "AGE"]
    assert row[:5] == ["hello-agent", "2", "Ready", "12.4", "50"]
    assert row[5] in ("119m", "120m", "121m", "2h") or row[5].startswith("2h"), row
    by_category = cluster.kubectl("-n", namespace, "get", "agents", "-o", "name").stdout
    assert by_category.strip() == "agentdeployment.agents.dev/hello-agent"
