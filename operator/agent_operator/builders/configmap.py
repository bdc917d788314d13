"""ConfigMap X-budget: the `budget.json` the gateway enforces."""

from __future__ import annotations

import json
from typing import Any

from agent_operator.api import AgentDeployment, Budget
from agent_operator.builders.labels import budget_name, metadata
from agent_operator.prices import BUILTIN_PRICES

BUDGET_KEY = "budget.json"


def budget_config(agd: AgentDeployment) -> dict[str, Any]:
    """The content of budget.json (USD; prices per 1M tokens), as docs/architecture.md fixes it.

    Without spec.budget there are no limits, but spend is still priced.
    """
    budget = agd.spec.budget or Budget()
    prices = {model: {"input": i, "output": o} for model, (i, o) in BUILTIN_PRICES.items()}
    for model, price in budget.prices.items():
        prices[model] = {"input": price.input, "output": price.output}
    return {
        "limits": [{"period": limit.period, "maxUSD": limit.max_usd} for limit in budget.limits],
        "alertThresholds": list(budget.alert_thresholds),
        "onExhausted": budget.on_exhausted,
        "downgradeModel": budget.downgrade_model,
        "prices": dict(sorted(prices.items())),
        "unknownModelPrice": {
            "input": budget.unknown_model_price.input,
            "output": budget.unknown_model_price.output,
        },
    }


def format_json(config: dict[str, Any]) -> str:
    """JSON with one top-level key, or one price, per line: diffable, still short."""
    lines = []
    for key, value in config.items():
        if isinstance(value, dict) and value and key == "prices":
            entries = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()]
            lines.append(f"  {json.dumps(key)}: {{\n" + ",\n".join(entries) + "\n  }")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def budget_configmap(agd: AgentDeployment) -> dict[str, Any]:
    """ConfigMap X-budget; the gateway rereads the file when Kubernetes swaps it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(agd, budget_name(agd)),
        "data": {BUDGET_KEY: format_json(budget_config(agd))},
    }
