"""The CRD: generated from the models, checked in unchanged, structural, loadable."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent_operator import crd
from agent_operator.api import ISSUER_SOURCE_LABEL, AgentDeploymentSpec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def _schema() -> dict[str, Any]:
    version = crd.crd()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, child in node.get("properties", {}).items():
        out += _nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _nodes(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.mark.parametrize("kind", tuple(crd.DOCUMENTS))
def test_checked_in_crds_are_generator_output(kind: str) -> None:
    # Regenerate with: make crd (the chart's copies: tests/unit/test_chart.py)
    path = REPO / "crds" / f"{kind}.agents.dev.yaml"
    assert path.read_text() == crd.render(kind=kind), f"{path} is stale: run `make crd`"


def test_ledger_crd_and_policy_pass_the_kubernetes_schema() -> None:
    for obj in [crd.spend_record_crd(), *crd.spend_record_policy()]:
        assert kubernetes_validate.validate(obj, "1.37", strict=True) == "1.37", obj["kind"]
    policy = crd.spend_record_policy()[0]["spec"]
    assert policy["failurePolicy"] == "Fail"
    assert {v["message"] for v in policy["validations"]} >= {
        "a gateway writes only its own AgentDeployment's spend records",
        "a spend record's spend only grows",
    }


def test_crd_command_prints_yaml_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert crd.main([]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == crd.crd()
    assert crd.main(["-o", "json"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == crd.crd()


def test_crd_passes_the_kubernetes_schema() -> None:
    assert kubernetes_validate.validate(crd.crd(), "1.37", strict=True) == "1.37"


def test_names_and_subresources() -> None:
    spec = crd.crd()["spec"]
    assert spec["group"] == "agents.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "AgentDeployment"
    assert spec["names"]["plural"] == "agentdeployments"
    assert spec["names"]["shortNames"] == ["agd"]
    assert spec["names"]["categories"] == ["agents"]
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Ready", "Phase", "Spent", "Limit", "Key Age", "Age"]
    assert columns["Key Age"] == {
        **columns["Key Age"],
        "type": "date",
        "jsonPath": ".status.credentials.rotatedAt",
    }


def test_schema_is_structural() -> None:
    """Every node typed, no refs or nulls, junctors only for int-or-string."""
    for path, node in _nodes(_schema()):
        assert not {"$ref", "$defs", "title", "allOf", "oneOf", "nullable"} & node.keys(), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert "anyOf" not in node, path
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, (
            path
        )
        assert node.get("default", "") is not None, path
        if node["type"] == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
            assert (
                "properties" in node or "additionalProperties" in node or path in (".metadata",)
            ), path


def test_status_keeps_unknown_fields_and_is_typed() -> None:
    status = _schema()["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert {"phase", "conditions", "budget", "credentials", "observedGeneration"} <= set(
        status["properties"]
    )
    assert not any("default" in node for _, node in _nodes(status))


def test_validation_rules_sit_where_the_field_is_named() -> None:
    spec = _schema()["properties"]["spec"]
    by_path = {
        # A rule on the node it checks names no fieldPath: "" (the node itself).
        path: [r.get("fieldPath", "") for r in node.get("x-kubernetes-validations", [])]
        for path, node in _nodes(spec)
    }
    assert by_path[""] == [".replicas", ".port", ".env", ".env"]
    assert by_path[".autoscaling"] == [".maxReplicas"]
    assert by_path[".credentials.issuer"] == [".secretRef", ".projectID"]
    assert by_path[".credentials.rotation"] == [".every", ".gracePeriod", ".gracePeriod"]
    assert by_path[".budget"] == [".downgradeModel", ".alertThresholds", ".prices", ".redis"]
    assert by_path[".model"] == [".baseURL"]
    # each pattern on its own, so the server names the bad item: extraPatterns[1]
    assert by_path[".gateway.promptGuard.extraPatterns[]"] == [""]
    thresholds = spec["properties"]["budget"]["properties"]["alertThresholds"]["items"]
    assert thresholds == {**thresholds, "minimum": 0, "exclusiveMinimum": True, "maximum": 1}
    metadata = _schema()["properties"]["metadata"]["properties"]["name"]
    assert metadata["maxLength"] == 51


def _apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it (defaults, then recurse)."""
    if isinstance(value, dict) and "properties" in schema:
        for name, prop in schema["properties"].items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                value[name] = _apply_defaults(prop, value[name])
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for name in value:
            value[name] = _apply_defaults(schema["additionalProperties"], value[name])
    elif isinstance(value, list) and "items" in schema:
        value = [_apply_defaults(schema["items"], v) for v in value]
    return value


def _normalise(value: Any) -> Any:
    """Numbers compare by value (30 == 30.0 == quantity "30"), as the API server sees them."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return value


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_crd_defaults_equal_model_defaults(example: Path) -> None:
    """What the API server stores is what the models assume offline."""
    spec = yaml.safe_load(example.read_text())["spec"]
    by_server = _apply_defaults(_schema()["properties"]["spec"], copy.deepcopy(spec))
    by_model = AgentDeploymentSpec.model_validate(spec).model_dump(by_alias=True, exclude_none=True)
    assert _normalise(by_server) == _normalise(by_model)


def test_secret_ref_names_the_issuer_source_label() -> None:
    """`kubectl explain` must tell users the label the operator checks, spelled the same."""
    issuer = _schema()["properties"]["spec"]["properties"]["credentials"]["properties"]["issuer"]
    assert ISSUER_SOURCE_LABEL in issuer["properties"]["secretRef"]["description"]
