"""The chart's monitoring sources: the Grafana dashboard and the alert rules.

Every metric they query must be one the code exports, and every alert must be
valid PromQL with a `for`, a severity and its annotations. The exported names
come from the real registries, so a renamed metric fails here, not on a
dashboard that silently shows "No data".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

import helm
from agent_operator.api import AgentDeployment
from agent_operator.builders import desired_children
from agent_operator.builders.labels import AGENT_LABEL
from agent_operator.gateway.telemetry import Metrics
from agent_operator.operator import metrics as operator_metrics

CHART = helm.CHART
DASHBOARD = CHART / "files" / "dashboard.json"
ALERTS = CHART / "files" / "alerts.yaml"

# Series names prometheus_client exposes per family type (counters also
# expose `_created`, which appears among the samples).
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def _series_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        derived = {family.name + suffix for suffix in _SUFFIXES[family.type]}
        sampled = {sample.name for sample in family.samples}
        # A labelled family has no samples until a child exists; an unlabelled
        # one shows that the derivation matches what prometheus_client exposes.
        assert not sampled or derived <= sampled, (family.name, sampled)
        names |= derived | sampled
    return names


@cache
def exported() -> frozenset[str]:
    """Every series name the gateway and the operator expose on /metrics."""
    return frozenset(_series_names(Metrics().registry) | _series_names(operator_metrics.REGISTRY))


def test_exported_names_cover_both_components() -> None:
    names = exported()
    assert "agent_gateway_requests_total" in names
    assert "agent_gateway_request_duration_seconds_bucket" in names
    assert "agent_operator_budget_spent_usd" in names
    assert "agent_operator_reconcile_errors_total" in names


def _metric_names(expr: promql_parser.Expr) -> list[str]:
    found: list[str] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            # a selector by {__name__=~...} would escape this check
            assert node.name, f"selector without a metric name in {expr}"
            found.append(node.name)

    promql_parser.walk(expr, visit)
    return found


# --- the dashboard ---------------------------------------------------------------------------


@cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


_GRAFANA_INTERVAL = re.compile(r"\$__(?:rate_interval|interval|range)\b")
_GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _as_promql(expr: str) -> str:
    """`expr` with Grafana's variables replaced by what Prometheus would receive."""
    expr = _GRAFANA_INTERVAL.sub("5m", expr)
    for match in _GRAFANA_VARIABLE.finditer(expr):
        name = match.group(1) or match.group(2)
        assert name in _variables(), f"undefined dashboard variable ${name} in {expr}"
    return _GRAFANA_VARIABLE.sub(".*", expr)


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    queries = []
    for panel in _panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            queries.append((panel["title"], _as_promql(target["expr"])))
    for variable in _variables().values():
        if variable["type"] == "query":
            # label_values(SELECTOR, LABEL) is Grafana's, not PromQL: check the selector
            found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert found, variable["definition"]
            queries.append((f"${variable['name']}", _as_promql(found.group(1))))
    return queries


def test_dashboard_is_grafana_json() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] and board["title"]
    variables = _variables()
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "agent"} <= set(variables)
    ids = [panel["id"] for panel in _panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(board["panels"]):
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_covers_the_issue() -> None:
    used = {name for _, query in _dashboard_queries() for name in _metric_names(_parse(query))}
    for wanted in (
        "agent_operator_budget_spent_usd",
        "agent_operator_budget_limit_usd",
        "agent_operator_credential_age_seconds",
        "agent_operator_credential_rotations_total",
        "agent_gateway_request_duration_seconds_bucket",
        "agent_gateway_requests_total",
        "agent_gateway_prompt_guard_detections_total",
        "agent_operator_reconcile_total",
        "agent_operator_reconcile_errors_total",
        "agent_operator_queue_depth",
    ):
        assert wanted in used, wanted


def _parse(query: str) -> promql_parser.Expr:
    try:
        return promql_parser.parse(query)
    except ValueError as err:
        pytest.fail(f"not PromQL: {query}: {err}")


@pytest.mark.parametrize(("where", "query"), _dashboard_queries())
def test_dashboard_queries_use_exported_metrics(where: str, query: str) -> None:
    names = _metric_names(_parse(query))
    assert names, f"{where}: no metric in {query}"
    unknown = sorted(set(names) - exported())
    assert not unknown, f"{where}: {unknown} are not exported"


# --- the alerts ------------------------------------------------------------------------------

# The Helm actions alerts.yaml may hold: Go raw strings (Prometheus's own
# templates, kept verbatim) and the warning fraction. Anything else would
# need a real Helm to render, and would be missed by this test.
_HELM_ACTION = re.compile(r"\{\{`(?P<raw>[^`]*)`\}\}|\{\{-?\s*(?P<action>.*?)\s*-?\}\}")
_FRACTION = ".Values.monitoring.prometheusRule.spendWarningFraction"


def render_alerts(fraction: float = 0.8) -> dict[str, Any]:
    """alerts.yaml as `tpl` renders it with `spendWarningFraction: fraction`."""

    def action(match: re.Match[str]) -> str:
        if match.group("raw") is not None:
            return match.group("raw")
        assert match.group("action") == _FRACTION, f"unexpected Helm action {match.group(0)}"
        return str(fraction)

    rendered: dict[str, Any] = yaml.safe_load(_HELM_ACTION.sub(action, ALERTS.read_text()))
    return rendered


def _rules() -> list[dict[str, Any]]:
    return [rule for group in render_alerts()["groups"] for rule in group["rules"]]


def _output_labels(expr: promql_parser.Expr) -> frozenset[str] | None:
    """Labels every result of `expr` is sure to carry (None: not worked out)."""
    if isinstance(expr, promql_parser.ParenExpr):
        return _output_labels(expr.expr)
    if isinstance(expr, promql_parser.AggregateExpr):
        modifier = expr.modifier
        if modifier is None:
            return frozenset()
        if modifier.type == promql_parser.AggModifierType.By:
            return frozenset(modifier.labels)
        return None
    if isinstance(expr, promql_parser.BinaryExpr):
        lhs, rhs = expr.lhs, expr.rhs
        if isinstance(rhs, promql_parser.NumberLiteral):
            return _output_labels(lhs)
        if isinstance(lhs, promql_parser.NumberLiteral):
            return _output_labels(rhs)
        left, right = _output_labels(lhs), _output_labels(rhs)
        op, modifier = str(expr.op), expr.modifier
        if op == "or":
            return None if left is None or right is None else left & right
        if left is None or op in ("and", "unless"):
            return left
        matching = modifier.matching if modifier else None
        if (
            modifier is not None
            and modifier.card == promql_parser.VectorMatchCardinality.OneToOne
            and matching is not None
        ):
            # one-to-one matching keeps only the `on` labels (or drops `ignoring`'s)
            if matching.type == promql_parser.LabelModifierType.Include:
                return left & frozenset(matching.labels)
            return left - frozenset(matching.labels)
        return left
    return None


def test_alerts_render_the_warning_fraction() -> None:
    def spend_high(fraction: float) -> str:
        rules = [r for g in render_alerts(fraction)["groups"] for r in g["rules"]]
        expr: str = next(r["expr"] for r in rules if r["alert"] == "AgentBudgetSpendHigh")
        return expr

    assert ">= 0.8 < 1" in spend_high(0.8)
    assert ">= 0.65 < 1" in spend_high(0.65)


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names))


def test_alerts_cover_the_issue() -> None:
    names = {rule["alert"] for rule in _rules()}
    assert {
        "AgentBudgetSpendHigh",
        "AgentBudgetExhausted",
        "AgentKeyRotationFailing",
        "AgentKeyOverdue",
        "AgentOperatorReconcileErrors",
        "AgentGatewayCircuitBreakerOpen",
        "AgentGatewayGuardBlocksSpiking",
    } <= names


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_alert(rule: dict[str, Any]) -> None:
    expr = _parse(rule["expr"])
    unknown = sorted(set(_metric_names(expr)) - exported())
    assert not unknown, f"{unknown} are not exported"
    assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    # a label the expression aggregates away renders empty in the notification
    labels = _output_labels(expr)
    if labels is not None:
        mentioned = set(re.findall(r"\$labels\.(\w+)", annotations["summary"]))
        mentioned |= set(re.findall(r"\$labels\.(\w+)", annotations["description"]))
        assert mentioned <= labels | set(rule["labels"]), mentioned - labels


# --- the chart, rendered by helm -------------------------------------------------------------

MONITORING = (
    "monitoring.serviceMonitor.enabled",
    "monitoring.podMonitor.enabled",
    "monitoring.prometheusRule.enabled",
    "monitoring.dashboard.enabled",
)


def render_chart(*settings: str) -> list[dict[str, Any]]:
    """The chart's objects as `helm template` renders them with `settings`.

    Each setting is KEY=JSON (`--set-json`: 0.75 stays a number, as in values.yaml).
    """
    argv = ["template", "rel", str(CHART), "--namespace", "ops"]
    for setting in settings:
        argv += ["--set-json", setting]
    return [doc for doc in yaml.safe_load_all(helm.run(*argv).stdout) if doc]


def test_chart_needs_the_metrics_service_for_the_service_monitor() -> None:
    result = helm.run(
        "template",
        "rel",
        str(CHART),
        "--set",
        "monitoring.serviceMonitor.enabled=true",
        "--set",
        "metrics.service.enabled=false",
        check=False,
    )
    assert result.returncode != 0
    assert "needs metrics.service.enabled" in result.stderr


def _pod_template() -> dict[str, Any]:
    body = yaml.safe_load((helm.REPO / "examples" / "minimal.yaml").read_text())
    body["metadata"].update(uid="0b5e3a52-1f44-4c1e-9a57-3d1b2f9e8c11", namespace="team-a")
    (deployment,) = [
        c for c in desired_children(AgentDeployment.from_body(body)) if c["kind"] == "Deployment"
    ]
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["apiVersion"].startswith("monitoring.")]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def _dashboards(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "ConfigMap" and "agent-operator.json" in o["data"]]


def test_chart_renders_no_monitoring_objects_when_off() -> None:
    objects = render_chart(*(f"{key}=false" for key in MONITORING))
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not _dashboards(objects)


def test_chart_renders_the_monitoring_objects() -> None:
    objects = render_chart(
        *(f"{key}=true" for key in MONITORING),
        'monitoring.serviceMonitor.interval="30s"',
        'monitoring.prometheusRule.labels.release="kube-prometheus-stack"',
        "monitoring.prometheusRule.spendWarningFraction=0.75",
    )
    # the ServiceMonitor finds the operator's metrics Service and its port
    monitor = _one(objects, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = [
        o
        for o in objects
        if o["kind"] == "Service" and wanted.items() <= o["metadata"].get("labels", {}).items()
    ]
    assert services, f"no Service labelled {wanted}"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert any(
        port.get("name") == endpoint["port"] for s in services for port in s["spec"]["ports"]
    ), f"no Service port named {endpoint['port']}"
    assert endpoint["honorLabels"] is True
    assert endpoint["interval"] == "30s"

    # the PodMonitor finds the gateway of an AgentDeployment's pod, as the builders make it
    pods = _one(objects, "PodMonitor")["spec"]
    assert pods["namespaceSelector"] == {"any": True}
    template = _pod_template()
    labels = template["metadata"]["labels"]
    assert pods["selector"]["matchLabels"].items() <= labels.items()
    for expression in pods["selector"]["matchExpressions"]:
        assert (expression["operator"], expression["key"] in labels) == ("Exists", True)
    (endpoint,) = pods["podMetricsEndpoints"]
    ports = {
        port["name"]: (container["name"], port["containerPort"])
        for container in template["spec"]["containers"]
        for port in container.get("ports", [])
    }
    annotations = template["metadata"]["annotations"]
    assert ports[endpoint["port"]] == ("gateway", int(annotations["prometheus.io/port"]))
    assert endpoint["path"] == annotations["prometheus.io/path"]
    (relabel,) = endpoint["relabelings"]
    assert relabel["sourceLabels"] == [
        "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", AGENT_LABEL)
    ]
    assert relabel["targetLabel"] == "agent"

    rule = _one(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == render_alerts(0.75)

    (dashboard_map,) = _dashboards(objects)
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard_map["data"]["agent-operator.json"]) == dashboard()


def test_chart_pod_monitor_follows_watched_namespaces() -> None:
    objects = render_chart(
        "monitoring.podMonitor.enabled=true", 'watchNamespaces=["team-a","team-b"]'
    )
    selector = _one(objects, "PodMonitor")["spec"]["namespaceSelector"]
    assert selector == {"matchNames": ["team-a", "team-b"]}
