"""The builders and the gateway agree on the sidecar contract (agent_operator.sidecar):
the command line the builder renders parses back to the same GatewayArgs, and
the budget.json it writes is a BudgetFile the gateway loads, for every example
and for generated specs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from agent_operator.api import AgentDeployment
from agent_operator.builders import budget_configmap, budget_file, gateway_args, gateway_command
from agent_operator.gateway.budget import budget_from_json
from agent_operator.gateway.config import parse_settings
from agent_operator.sidecar import (
    BUDGET_FILE,
    GATEWAY_ENTRYPOINT,
    UNMETERED_ENDPOINTS,
    BudgetFile,
    GatewayArgs,
    Listen,
    parse,
)
from tests.strategies import manifests
from tests.unit.test_builders_properties import PROPERTY

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def load(path: Path) -> AgentDeployment:
    return AgentDeployment.from_body(yaml.safe_load(path.read_text()))


def minimal(**gateway: Any) -> AgentDeployment:
    body = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    body["spec"]["gateway"] = gateway
    return AgentDeployment.from_body(body)


def assert_round_trip(agd: AgentDeployment) -> None:
    args = gateway_args(agd)
    command = gateway_command(agd)
    assert command[:2] == list(GATEWAY_ENTRYPOINT)
    assert parse(command[2:]) == args
    settings = parse_settings(command[2:])
    assert settings.provider == agd.spec.model.provider
    assert settings.agent == agd.name
    assert (settings.client_keys_dir is not None) == agd.spec.client_auth.enabled
    assert settings.prompt_guard_extra_patterns == tuple(
        agd.spec.gateway.prompt_guard.extra_patterns
    )
    assert settings.allow_unmetered == set(agd.spec.gateway.allow_unmetered_endpoints)


def assert_budget_round_trip(agd: AgentDeployment) -> None:
    text = budget_configmap(agd)["data"][BUDGET_FILE]
    assert BudgetFile.model_validate_json(text) == budget_file(agd)
    config = budget_from_json(text)
    budget = agd.spec.budget
    assert len(config.limits) == (len(budget.limits) if budget else 0)
    assert config.on_exhausted == (budget.on_exhausted if budget else "reject")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_rendered_command_parses_back_to_the_same_args(example: Path) -> None:
    assert_round_trip(load(example))


@PROPERTY
@given(manifests())
def test_generated_specs_round_trip_through_the_command_line(manifest: dict[str, Any]) -> None:
    assert_round_trip(AgentDeployment.from_body(manifest))


@pytest.mark.parametrize("endpoints", [[], list(UNMETERED_ENDPOINTS)[::-1]])
def test_every_unmetered_endpoint_and_the_body_limit_round_trip(endpoints: list[str]) -> None:
    agd = minimal(allowUnmeteredEndpoints=endpoints, maxRequestBodyBytes=67108864)
    args = parse(gateway_command(agd)[2:])
    assert args.allow_unmetered == set(endpoints)
    assert args.max_request_body_bytes == 67108864


def test_pattern_that_looks_like_an_option_survives() -> None:
    agd = minimal(promptGuard={"extraPatterns": ["-{3,}", "--ignore", "a+"]})
    command = gateway_command(agd)
    assert "--prompt-guard-extra-pattern=--ignore" in command
    assert parse(command[2:]).prompt_guard_extra_patterns == ("-{3,}", "--ignore", "a+")


texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
seconds = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False)
listens = st.builds(
    Listen, st.sampled_from(["0.0.0.0", "127.0.0.1", "::1", "localhost"]), st.integers(0, 65535)
)


@given(
    st.builds(
        GatewayArgs,
        provider=st.sampled_from(["openai", "anthropic", "azure-openai", "openai-compatible"]),
        upstream_url=st.sampled_from(["https://api.openai.com/v1/", "http://h:1"]),
        inbound_listen=listens,
        outbound_listen=listens,
        credentials_dir=st.just(Path("/c")),
        client_keys_dir=st.none() | st.just(Path("/k")),
        budget_dir=st.none() | st.just(Path("/b")),
        timeout_seconds=seconds,
        retry_backoff_min_seconds=st.just(0.5),
        retry_backoff_max_seconds=seconds.filter(lambda s: s >= 0.5),
        prompt_guard_extra_patterns=st.lists(texts, max_size=4).map(tuple),
        allow_unmetered=st.frozensets(st.sampled_from(UNMETERED_ENDPOINTS)),
        otlp_endpoint=st.none() | texts,
        agent=texts.filter(lambda t: not t.startswith("-")) | st.just("-x"),
        max_connections=st.integers(1, 10**6),
        header_timeout_seconds=seconds,
        body_timeout_seconds=seconds,
    )
)
def test_any_args_round_trip(args: GatewayArgs) -> None:
    assert parse(args.to_argv()) == args


def test_unrendered_flags_appear_only_when_they_differ_from_the_default() -> None:
    args = gateway_args(load(REPO / "examples" / "minimal.yaml"))
    assert "--max-connections" not in args.to_argv()
    lowered = dataclasses.replace(args, max_connections=8, header_timeout_seconds=0.5)
    assert lowered.to_argv()[-4:] == ["--max-connections", "8", "--header-timeout-seconds", "0.5"]
    assert parse(lowered.to_argv()) == lowered


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_gateway_loads_the_rendered_budget(example: Path) -> None:
    agd = load(example)
    assert_budget_round_trip(agd)
    price, known = budget_from_json(budget_configmap(agd)["data"][BUDGET_FILE]).price_for("gpt-4o")
    assert known and (price.input, price.output) == (2.5, 10.0)


@PROPERTY
@given(manifests())
def test_generated_budgets_round_trip(manifest: dict[str, Any]) -> None:
    assert_budget_round_trip(AgentDeployment.from_body(manifest))
