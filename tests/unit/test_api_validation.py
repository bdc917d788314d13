"""Offline validation: the models refuse what the API server refuses, naming the field."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_operator.api import MAX_ENV_BYTES, AgentDeployment, InvalidSpec, duration_seconds
from tests.manifests import merge

REPO = Path(__file__).resolve().parents[2]
TABLE = yaml.safe_load((Path(__file__).parent / "golden" / "invalid-manifests.yaml").read_text())


def case_manifest(case: Mapping[str, Any]) -> dict[str, Any]:
    patch = {k: case[k] for k in ("metadata", "spec") if k in case}
    return merge(TABLE["base"], patch)


def errors_of(manifest: Mapping[str, Any]) -> list[str]:
    with pytest.raises(InvalidSpec) as info:
        AgentDeployment.from_body(manifest)
    return info.value.errors


def test_table_base_is_valid() -> None:
    assert AgentDeployment.from_body(TABLE["base"]).name == "bad-agent"


def test_table_is_big_enough() -> None:
    assert len(TABLE["cases"]) >= 15
    assert len({c["id"] for c in TABLE["cases"]}) == len(TABLE["cases"])


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda c: c["id"])
def test_invalid_manifest_names_the_field(case: dict[str, Any]) -> None:
    errors = errors_of(case_manifest(case))
    assert any(line.startswith(case["field"]) for line in errors), errors
    if "message" in case:
        assert any(line.startswith(f"{case['field']}: {case['message']}") for line in errors), (
            errors
        )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}},
            "spec.autoscaling.maxReplicas: must be >= minReplicas",
        ),
        ({"credentials": None}, "spec.credentials: required value"),
        ({"replicsa": 1}, "spec.replicsa: unknown field"),
        (
            {"credentials": {"rotation": {"every": "1 week"}}},
            "spec.credentials.rotation.every: must be a Go duration such as 720h, 30m or 10s",
        ),
        (
            {"resources": {"requests": {"memory": "much"}}},
            "spec.resources.requests.memory: must be a quantity such as 500m, 2 or 1Gi",
        ),
        (
            {"gateway": {"promptGuard": {"extraPatterns": ["ok", "(unclosed"]}}},
            "spec.gateway.promptGuard.extraPatterns[1]: must be a regular expression in RE2 "
            "syntax: missing ): (unclosed",
        ),
        (
            {"gateway": {"promptGuard": {"extraPatterns": ["(?<!x)y"]}}},
            "spec.gateway.promptGuard.extraPatterns[0]: must be a regular expression in RE2 "
            "syntax: invalid perl operator: (?<!",
        ),
        (
            {"env": [{"name": "BIG", "value": "v" * (32 * 1024 + 1)}]},
            "spec.env[0].value: String should have at most 32768 characters",
        ),
        (
            {"gateway": {"allowUnmeteredEndpoints": ["images", "images"]}},
            "spec.gateway.allowUnmeteredEndpoints[1]: duplicate value 'images'",
        ),
        (
            {"gateway": {"allowUnmeteredEndpoints": ["embeddings"]}},
            "spec.gateway.allowUnmeteredEndpoints[0]: must be one of assistants-runs, audio, "
            "batches, completions, fine-tuning, images, realtime, videos",
        ),
        (
            {
                "budget": {
                    "limits": [{"period": "day", "maxUSD": 1}, {"period": "day", "maxUSD": 2}]
                }
            },
            "spec.budget.limits[1].period: duplicate period 'day'",
        ),
        (
            {"budget": {"alertThresholds": [0.5, 1.01]}},
            "spec.budget.alertThresholds[1]: Input should be less than or equal to 1",
        ),
    ],
)
def test_messages(spec: dict[str, Any], expected: str) -> None:
    manifest = merge(TABLE["base"], {"spec": spec})
    assert expected in errors_of(manifest)


@pytest.mark.parametrize("char", ["x", "\U0001d11e"])  # 1 and 4 bytes in UTF-8
def test_env_values_are_bounded_in_bytes_as_a_whole(char: str) -> None:
    per_value = 32 * 1024  # characters, the most one value may have
    count = MAX_ENV_BYTES // (per_value * len(char.encode()))
    env = [{"name": f"V{i}", "value": char * per_value} for i in range(count)]
    assert AgentDeployment.from_body(merge(TABLE["base"], {"spec": {"env": env}}))
    over = [*env, {"name": "ONE_MORE", "value": "x"}]
    assert errors_of(merge(TABLE["base"], {"spec": {"env": over}})) == [
        f"spec.env: values must total at most {MAX_ENV_BYTES} bytes (UTF-8)"
    ]


def test_every_error_is_reported_not_only_the_first() -> None:
    manifest = merge(TABLE["base"], {"spec": {"port": 0, "healthPath": "x", "image": None}})
    fields = [line.split(":")[0] for line in errors_of(manifest)]
    assert fields == ["spec.image", "spec.port", "spec.healthPath"]


def test_longest_name_is_accepted_and_one_more_is_not() -> None:
    longest = "a" + "b" * 50
    assert AgentDeployment.from_body(merge(TABLE["base"], {"metadata": {"name": longest}}))
    errors = errors_of(merge(TABLE["base"], {"metadata": {"name": longest + "c"}}))
    assert errors[0].startswith("metadata.name: must be at most 51 characters")


def test_wrong_kind_is_refused() -> None:
    errors = errors_of(merge(TABLE["base"], {"kind": "Deployment"}))
    assert errors == ["kind: Input should be 'AgentDeployment'"]


def test_non_mapping_is_refused() -> None:
    assert errors_of(["not", "a", "mapping"]) == ["<root>: must be a mapping"]  # type: ignore[arg-type]


class ReadOnlyView(Mapping[str, Any]):
    """Like kopf's Body: a Mapping, not a dict."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return ReadOnlyView(value) if isinstance(value, dict) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_from_body_reads_kopf_like_bodies_and_server_fields() -> None:
    body = merge(
        TABLE["base"],
        {
            "metadata": {
                "namespace": "team-a",
                "uid": "1234",
                "generation": 3,
                "resourceVersion": "9",
                "managedFields": [{"manager": "kubectl"}],
            },
            "status": {
                "phase": "Ready",
                "readyReplicas": 2,
                "kopf": {"progress": {}},
                "credentials": {"rotatedAt": "2026-01-02T03:04:05Z"},
            },
        },
    )
    agd = AgentDeployment.from_body(ReadOnlyView(body))
    assert (agd.namespace, agd.metadata.uid, agd.metadata.generation) == ("team-a", "1234", 3)
    assert agd.status.phase == "Ready" and agd.status.ready_replicas == 2
    assert agd.status.credentials is not None
    assert agd.status.credentials.rotated_at is not None
    assert agd.status.credentials.rotated_at.year == 2026


def test_unreadable_status_never_makes_a_valid_spec_invalid() -> None:
    body = merge(TABLE["base"], {"status": {"phase": "Exploded", "replicas": "many"}})
    agd = AgentDeployment.from_body(body)
    assert agd.status.phase is None


def test_defaults() -> None:
    spec = AgentDeployment.from_body(TABLE["base"]).spec
    assert (spec.port, spec.health_path, spec.replicas, spec.autoscaling) == (
        8000,
        "/health",
        None,
        None,
    )
    assert spec.model.provider == "openai"
    assert spec.model.upstream_url == "https://api.openai.com/v1"
    assert spec.credentials.issuer.secret_ref is not None
    assert spec.credentials.issuer.secret_ref.key == "apiKey"
    assert (spec.credentials.rotation.every, spec.credentials.rotation.grace_period) == (
        "720h",
        "24h",
    )
    assert (spec.client_auth.enabled, spec.client_auth.rotation.every) == (False, "168h")
    assert spec.gateway.retries.attempts == 3
    assert spec.gateway.prompt_guard.mode == "block"
    assert spec.telemetry.otlp_endpoint == ""


def test_anthropic_default_upstream() -> None:
    agd = AgentDeployment.from_body(
        merge(TABLE["base"], {"spec": {"model": {"provider": "anthropic"}}})
    )
    assert agd.spec.model.upstream_url == "https://api.anthropic.com"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("720h", 2_592_000.0), ("1h30m", 5400.0), ("10s", 10.0), ("1.5m", 90.0), ("250ms", 0.25)],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    assert AgentDeployment.from_body(yaml.safe_load(path.read_text())).spec.image
