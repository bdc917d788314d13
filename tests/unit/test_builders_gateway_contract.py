"""The builders and the gateway agree on the contract of docs/architecture.md:
the gateway's own parsers accept the command line and the budget.json that
the builders render for every example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from agent_operator.api import AgentDeployment
from agent_operator.builders import budget_configmap, gateway_command
from agent_operator.gateway.budget import parse_budget
from agent_operator.gateway.config import build_parser
from agent_operator.sidecar import UNMETERED_ENDPOINTS

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def load(path: Path) -> AgentDeployment:
    return AgentDeployment.from_body(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_gateway_parses_the_rendered_command(example: Path) -> None:
    agd = load(example)
    command = gateway_command(agd)
    assert command[:2] == ["agent-operator", "gateway"]
    args = build_parser().parse_args(command[2:])
    assert args.provider == agd.spec.model.provider
    assert args.agent == agd.name
    assert (args.client_keys_dir is not None) == agd.spec.client_auth.enabled
    assert args.prompt_guard_extra_pattern == list(agd.spec.gateway.prompt_guard.extra_patterns)
    assert args.max_request_body_bytes == agd.spec.gateway.max_request_body_bytes
    assert args.allow_unmetered == sorted(agd.spec.gateway.allow_unmetered_endpoints)


@pytest.mark.parametrize("endpoints", [[], list(UNMETERED_ENDPOINTS)[::-1]])
def test_gateway_parses_every_unmetered_endpoint_and_the_body_limit(endpoints: list[str]) -> None:
    body = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    body["spec"]["gateway"] = {
        "allowUnmeteredEndpoints": endpoints,
        "maxRequestBodyBytes": 67108864,
    }
    args = build_parser().parse_args(gateway_command(AgentDeployment.from_body(body))[2:])
    assert args.allow_unmetered == sorted(endpoints)
    assert args.max_request_body_bytes == 67108864


def test_pattern_that_looks_like_an_option_survives() -> None:
    body = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    body["spec"]["gateway"] = {"promptGuard": {"extraPatterns": ["-{3,}", "--ignore"]}}
    args = build_parser().parse_args(gateway_command(AgentDeployment.from_body(body))[2:])
    assert args.prompt_guard_extra_pattern == ["-{3,}", "--ignore"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_gateway_parses_the_rendered_budget(example: Path) -> None:
    agd = load(example)
    config = parse_budget(json.loads(budget_configmap(agd)["data"]["budget.json"]))
    budget = agd.spec.budget
    assert len(config.limits) == (len(budget.limits) if budget else 0)
    assert config.on_exhausted == (budget.on_exhausted if budget else "reject")
    price, known = config.price_for("gpt-4o")
    assert known and (price.input, price.output) == (2.5, 10.0)
