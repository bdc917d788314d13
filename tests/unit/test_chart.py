"""The Helm chart, with the real helm (hack/build-helm): lint, render, schema, RBAC.

Every rendered object is checked against the Kubernetes 1.37 schemas
(kubernetes-validate, strict); kopf's peering objects against their CRD; the
Prometheus Operator's kinds, which no schema here knows, by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

import chartgen  # hack/ is on pytest's pythonpath
import helm
from agent_operator import crd
from agent_operator.api import AgentDeployment
from agent_operator.builders.rbac import gateway_role
from agent_operator.operator import config as operator_config

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "agent-operator"
DOCS = REPO / "docs" / "operator.md"
KUBE_VERSION = "1.37.2"
# Built here, at collection, so a cold build (minutes) never counts against a test's timeout.
HELM = helm.binary()

# --- what the operator needs: docs/operator.md, "Permissions" ----------------------------

Rule = tuple[str, str]  # (API group, resource)
NAMESPACED: dict[Rule, set[str]] = {
    ("agents.dev", "agentdeployments"): {"get", "list", "watch", "patch"},
    ("agents.dev", "agentdeployments/status"): {"patch"},
    ("agents.dev", "agentdeployments/finalizers"): {"update"},
    ("agents.dev", "spendrecords"): {"get", "list", "watch", "create", "update", "delete"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("", "services"): {"get", "list", "watch", "create", "patch"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch"},
    ("", "serviceaccounts"): {"get", "list", "watch", "create", "patch"},
    ("rbac.authorization.k8s.io", "roles"): {"get", "list", "watch", "create", "patch"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"get", "list", "watch", "create", "patch"},
    ("autoscaling", "horizontalpodautoscalers"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    },
    ("", "secrets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"list"},
    ("", "events"): {"create"},
}
CRDS_READ: dict[Rule, set[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}
}
NAMESPACES_READ: dict[Rule, set[str]] = {("", "namespaces"): {"list", "watch"}}
PEERING: dict[Rule, set[str]] = {("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"}}
CLUSTER_PEERING: dict[Rule, set[str]] = {
    ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"}
}
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}

NAMESPACED_MONITORED = {
    "watchNamespaces": ["team-a", "team-b"],
    "monitoring": {
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
        "podMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "spendWarningFraction": 0.75},
        "dashboard": {"enabled": True},
    },
}


# --- helpers ---------------------------------------------------------------------------


def render(
    tmp_path: Path, values: dict[str, Any] | None = None, *sets: str, check: bool = True
) -> list[dict[str, Any]]:
    """The chart's objects as `helm template` renders them (release `rel` in `ops`)."""
    argv = ["template", "rel", str(CHART), "--namespace", "ops", "--kube-version", KUBE_VERSION]
    if values is not None:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        argv += ["--values", str(path)]
    for setting in sets:
        argv += ["--set", setting]
    result = helm.run(*argv)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def refused(*sets: str) -> str:
    """helm's error for values the schema refuses."""
    argv = ["template", "rel", str(CHART), "--kube-version", KUBE_VERSION]
    for setting in sets:
        argv += ["--set", setting]
    result = helm.run(*argv, check=False)
    assert result.returncode != 0, f"accepted: {sets}"
    return result.stderr


def one(objects: list[dict[str, Any]], kind: str, namespace: str | None = None) -> dict[str, Any]:
    found = [
        o
        for o in objects
        if o["kind"] == kind and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, f"{len(found)} {kind} in {namespace}"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (operator,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = operator
    return result


def env(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(objects)["env"] if "value" in e}


def permissions(rules: list[dict[str, Any]]) -> dict[Rule, set[str]]:
    """RBAC rules flattened to (group, resource) -> verbs; no rule may name resources."""
    out: dict[Rule, set[str]] = {}
    for rule in rules:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def merged(*tables: dict[Rule, set[str]]) -> dict[Rule, set[str]]:
    out: dict[Rule, set[str]] = {}
    for table in tables:
        for key, verbs in table.items():
            out.setdefault(key, set()).update(verbs)
    return out


def peering_schema(kind: str) -> dict[str, Any]:
    for doc in yaml.safe_load_all((REPO / "crds" / "kopf-peering.yaml").read_text()):
        if doc and doc["spec"]["names"]["kind"] == kind:
            (version,) = doc["spec"]["versions"]
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"no CRD for {kind}")


def validate(obj: dict[str, Any]) -> None:
    """One rendered object against the schema of its kind."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    meta = obj["metadata"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", meta["name"]), meta["name"]
    assert len(meta["name"]) <= 253
    if api_version == "monitoring.coreos.com/v1":
        # No schema of the Prometheus Operator's CRDs here: their shape, by hand.
        assert kind in MONITORING_KINDS, kind
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}, set(obj)
        assert set(meta) <= {"name", "namespace", "labels", "annotations"}, set(meta)
        assert meta["namespace"] == "ops"
        assert all(isinstance(v, str) for v in meta.get("labels", {}).values())
        assert isinstance(obj["spec"], dict) and obj["spec"]
        return
    if api_version == "kopf.dev/v1":
        jsonschema.validate(obj, peering_schema(kind))
        assert set(obj) == {"apiVersion", "kind", "metadata"}, set(obj)
        return
    assert kubernetes_validate.validate(obj, "1.37", strict=True) == "1.37", kind


# --- lint and render ---------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, NAMESPACED_MONITORED], ids=["defaults", "namespaced"])
def test_lint_strict(tmp_path: Path, values: dict[str, Any] | None) -> None:
    argv = ["lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART)]
    if values is not None:
        (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
        argv += ["--values", str(tmp_path / "values.yaml")]
    result = helm.run(*argv, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_default_render(tmp_path: Path) -> None:
    objects = render(tmp_path)
    for obj in objects:
        validate(obj)
    assert kinds(objects) == [
        "ClusterKopfPeering",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    operator = container(objects)
    assert operator["image"] == "agent-operator:0.1.0"
    assert operator["args"] == ["run"]
    assert env(objects) == {
        "AGENT_OPERATOR_PEERING": "rel-agent-operator",
        "AGENT_OPERATOR_PRIORITY": "auto",
        "AGENT_OPERATOR_GATEWAY_IMAGE": "agent-operator:0.1.0",
        "AGENT_OPERATOR_GATEWAY_IMAGE_PULL_POLICY": "IfNotPresent",
        "AGENT_OPERATOR_LOG_FORMAT": "json",
        "AGENT_OPERATOR_LOG_LEVEL": "info",
        "AGENT_OPERATOR_METRICS_PORT": "8080",
        "AGENT_OPERATOR_HEALTH_PORT": "8081",
    }
    pod_name = next(e for e in operator["env"] if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # the restricted Pod Security Standard
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = operator["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # probes on the health port, metrics on its own
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert operator["resources"]["requests"] and operator["resources"]["limits"]["memory"]
    # several replicas: spread across nodes, never all disrupted at once
    selector = deployment["spec"]["selector"]["matchLabels"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"] == selector
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # the metrics Service reaches the pods' metrics port
    service = one(objects, "Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    # the ServiceAccount the bindings name is the pods'
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    (subject,) = one(objects, "ClusterRoleBinding")["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": account, "namespace": "ops"}
    assert one(objects, "ClusterKopfPeering")["metadata"]["name"] == "rel-agent-operator"


def test_namespaced_render_with_monitoring(tmp_path: Path) -> None:
    objects = render(tmp_path, NAMESPACED_MONITORED)
    for obj in objects:
        validate(obj)
    for namespace in ("team-a", "team-b"):
        one(objects, "Role", namespace)
        binding = one(objects, "RoleBinding", namespace)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "rel-agent-operator",
        }
        assert binding["subjects"][0]["namespace"] == "ops"
        one(objects, "KopfPeering", namespace)
    assert not [o for o in objects if o["kind"] == "ClusterKopfPeering"]
    assert env(objects)["AGENT_OPERATOR_NAMESPACES"] == "team-a,team-b"
    # the monitoring templates (if present) render with these values
    monitoring = {o["kind"] for o in objects if o["apiVersion"].startswith("monitoring.")}
    assert monitoring <= MONITORING_KINDS


def test_one_replica_runs_standalone(tmp_path: Path) -> None:
    objects = render(tmp_path, None, "replicaCount=1")
    for obj in objects:
        validate(obj)
    variables = env(objects)
    assert variables["AGENT_OPERATOR_STANDALONE"] == "true"
    assert "AGENT_OPERATOR_PEERING" not in variables
    assert "AGENT_OPERATOR_PRIORITY" not in variables
    present = set(kinds(objects))
    assert not present & {"PodDisruptionBudget", "ClusterKopfPeering", "KopfPeering"}
    assert "topologySpreadConstraints" not in one(objects, "Deployment")["spec"]["template"]["spec"]
    rules = permissions(one(objects, "ClusterRole")["rules"])
    assert not {group for group, _ in rules} & {"kopf.dev"}


def test_the_environment_is_what_agent_operator_run_reads(tmp_path: Path) -> None:
    """The Deployment's settings, parsed by the operator's own flag parser."""
    values = {
        "replicaCount": 3,
        "watchNamespaces": ["team-a", "team-b"],
        "logLevel": "warning",
        "logFormat": "text",
        "metrics": {"port": 9100},
        "healthPort": 9101,
        "image": {"repository": "registry.example.com/agent-operator", "tag": "1.2.3"},
        "gatewayImage": {"tag": "1.2.4", "pullPolicy": "Always"},
    }
    objects = render(tmp_path, values)
    settings = operator_config.load([], env(objects))
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.peering == "rel-agent-operator" and not settings.standalone
    assert settings.priority is None  # auto: each replica its own
    assert (settings.log_level, settings.log_format) == ("warning", "text")
    assert (settings.metrics_port, settings.health_port) == (9100, 9101)
    assert settings.build.gateway_image == "registry.example.com/agent-operator:1.2.4"
    assert settings.build.gateway_image_pull_policy == "Always"
    assert container(objects)["image"] == "registry.example.com/agent-operator:1.2.3"

    standalone = operator_config.load([], env(render(tmp_path, None, "replicaCount=1")))
    assert standalone.standalone and standalone.peering is None
    assert standalone.namespaces == ()  # every namespace


def test_service_account_can_be_an_existing_one(tmp_path: Path) -> None:
    objects = render(tmp_path, None, "serviceAccount.create=false", "serviceAccount.name=ops-sa")
    assert "ServiceAccount" not in kinds(objects)
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"
    assert one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "ops-sa"
    assert "serviceAccount.name is required" in refused("serviceAccount.create=false")


def test_ports_must_differ() -> None:
    assert "metrics.port and healthPort must differ" in refused("healthPort=8080")


# --- values.schema.json ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicaCount=-1", "at '/replicaCount': minimum: got -1, want 1"),
        ("replicaCount=two", "at '/replicaCount'"),
        ("logLevel=loud", "at '/logLevel': value must be one of"),
        ("logFormat=xml", "at '/logFormat'"),
        ("bogus=1", "additional properties 'bogus' not allowed"),
        ("image.bogus=1", "at '/image': additional properties 'bogus' not allowed"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("gatewayImage.pullPolicy=Sometimes", "at '/gatewayImage/pullPolicy'"),
        ("metrics.port=0", "at '/metrics/port': minimum"),
        ("metrics.service.port=70000", "at '/metrics/service/port': maximum"),
        ("healthPort=http", "at '/healthPort'"),
        ("watchNamespaces={Team_A}", "at '/watchNamespaces/0'"),
        ("podDisruptionBudget.minAvailable=half", "at '/podDisruptionBudget/minAvailable'"),
        ("serviceAccount.bogus=1", "at '/serviceAccount'"),
        ("securityContext.runAsRoot=true", "at '/securityContext'"),
        ("tolerations[0].bogus=x", "at '/tolerations/0'"),
        ("resources.limit.cpu=1", "at '/resources'"),
        ("affinity.nodeAffinity.bogus=1", "at '/affinity/nodeAffinity'"),
        ("monitoring.serviceMonitor.interval=soon", "at '/monitoring/serviceMonitor/interval'"),
        ("monitoring.prometheusRule.spendWarningFraction=0", "spendWarningFraction"),
        ("monitoring.prometheusRule.spendWarningFraction=1.5", "spendWarningFraction"),
        ("monitoring.dashboard.labels.x=null", "at '/monitoring/dashboard/labels"),
        ("spendRecordPolicy.create=maybe", "at '/spendRecordPolicy/create'"),
    ],
)
def test_schema_refuses(setting: str, message: str) -> None:
    error = refused(setting)
    assert "values don't meet the specifications of the schema" in error, error
    assert message in error, error


def test_schema_accepts_kubernetes_values(tmp_path: Path) -> None:
    values = {
        "podDisruptionBudget": {"minAvailable": "50%"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
            }
        ],
        "imagePullSecrets": [{"name": "registry"}],
        "podAnnotations": {"example.com/team": "platform"},
        "priorityClassName": "system-cluster-critical",
    }
    objects = render(tmp_path, values)
    for obj in objects:
        validate(obj)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == values["topologySpreadConstraints"]
    assert pod["affinity"] == values["affinity"]
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == "50%"


def test_schema_describes_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict[str, Any], path: str) -> None:
        assert node.get("additionalProperties") is False, f"{path}: additionalProperties"
        for key, child in node["properties"].items():
            assert child.get("description"), f"{path}.{key}: no description"
            if "properties" in child:
                walk(child, f"{path}.{key}")

    walk(schema, "")
    for name, definition in schema["$defs"].items():  # the Kubernetes types: strict too
        if "properties" in definition:
            assert definition.get("additionalProperties") is False, name


# --- RBAC: exactly what the operator needs -----------------------------------------------


def test_rbac_cluster_wide(tmp_path: Path) -> None:
    objects = render(tmp_path)
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]
    rules = permissions(one(objects, "ClusterRole")["rules"])
    assert rules == merged(NAMESPACED, CRDS_READ, CLUSTER_PEERING)


def test_rbac_namespaced(tmp_path: Path) -> None:
    objects = render(tmp_path, NAMESPACED_MONITORED)
    for namespace in ("team-a", "team-b"):
        assert permissions(one(objects, "Role", namespace)["rules"]) == merged(NAMESPACED, PEERING)
    # cluster-wide, only kopf's reads
    assert permissions(one(objects, "ClusterRole")["rules"]) == merged(CRDS_READ, NAMESPACES_READ)

    standalone = render(tmp_path, NAMESPACED_MONITORED, "replicaCount=1")
    assert permissions(one(standalone, "Role", "team-a")["rules"]) == NAMESPACED


def test_rbac_covers_the_gateway_role_the_operator_creates(tmp_path: Path) -> None:
    """RBAC lets the operator create Role X-gateway only if it holds all that Role grants."""
    body = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    body["metadata"].update(namespace="team-a", uid="0b5e3a52-1f44-4c1e-9a57-3d1b2f9e8c11")
    held = permissions(one(render(tmp_path), "ClusterRole")["rules"])
    for rule in gateway_role(AgentDeployment.from_body(body))["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert set(rule["verbs"]) <= held[(group, resource)], (group, resource)


def test_docs_list_the_same_permissions() -> None:
    """docs/operator.md's table of permissions is the test's."""
    text = DOCS.read_text()
    section = text[text.index("## Permissions") :]
    section = section[: section.index("\n## ", 1)]
    documented: dict[Rule, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("`"):
            continue
        group = "" if cells[0] == "core" else cells[0].strip("`")
        for resource in re.findall(r"`([^`]+)`", cells[1]):
            documented[(group, resource)] = {v.strip() for v in cells[2].split(",")}
    assert documented == merged(NAMESPACED, CRDS_READ, NAMESPACES_READ, PEERING, CLUSTER_PEERING)


# --- crds/ and the policy ------------------------------------------------------------------


def test_chart_crds_are_the_top_level_ones() -> None:
    top = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == top
    assert "kopf-peering.yaml" in top
    for name in top:
        source, copy = (REPO / "crds" / name).read_text(), (CHART / "crds" / name).read_text()
        # byte for byte, but for what Helm refuses in crds/: documents other than CRDs
        assert source.startswith(copy), name
        rest = source[len(copy) :]
        assert rest == "" or rest.startswith("---\n"), name
        assert all(
            d["kind"] == "CustomResourceDefinition" for d in yaml.safe_load_all(copy) if d
        ), name
        assert all(
            d["kind"] != "CustomResourceDefinition" for d in yaml.safe_load_all(rest) if d
        ), name


def test_policy_template_renders_the_policy(tmp_path: Path) -> None:
    objects = render(tmp_path)
    rendered = [
        one(objects, "ValidatingAdmissionPolicy"),
        one(objects, "ValidatingAdmissionPolicyBinding"),
    ]
    for obj in rendered:
        meta = obj["metadata"]
        assert meta.pop("annotations") == {"helm.sh/resource-policy": "keep"}
        assert meta["labels"].pop("app.kubernetes.io/instance") == "rel"
        for label in ("helm.sh/chart", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"):
            meta["labels"].pop(label)
    assert rendered == crd.spend_record_policy()
    assert not {o["kind"] for o in render(tmp_path, None, "spendRecordPolicy.create=false")} & {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }


def test_generated_files_are_current() -> None:
    """Chart crds/, the policy template, the schema's Kubernetes types, README's table:
    `.venv/bin/python hack/chartgen.py` rewrites whichever is out of date."""
    assert chartgen.stale() == []


def test_readme_values_table_lists_every_value() -> None:
    rows = set(re.findall(r"^\| `([^`]+)` \|", chartgen.values_table(), re.MULTILINE))

    def paths(node: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, value in node.items():
            if isinstance(value, dict) and value:
                out += paths(value, f"{prefix}{key}.")
            else:
                out.append(prefix + key)
        return out

    for path in paths(yaml.safe_load((CHART / "values.yaml").read_text())):
        assert any(path == row or path.startswith(row + ".") for row in rows), path
    assert chartgen.TABLE_START in (REPO / "README.md").read_text()
