"""ConfigMap X-budget: the `budget.json` the gateway enforces (`sidecar.BudgetFile`)."""

from __future__ import annotations

import json
from typing import Any

from agent_operator.api import AgentDeployment, Budget
from agent_operator.builders.labels import budget_name, metadata
from agent_operator.prices import BUILTIN_PRICES
from agent_operator.sidecar import BUDGET_FILE, BudgetFile, BudgetFileLimit, BudgetFilePrice


def budget_file(agd: AgentDeployment) -> BudgetFile:
    """The content of budget.json (USD; prices per 1M tokens).

    Prices are the built-in table merged with spec.budget.prices (spec wins).
    Without spec.budget there are no limits, but spend is still priced.
    """
    budget = agd.spec.budget or Budget()
    prices = {model: BudgetFilePrice(input=i, output=o) for model, (i, o) in BUILTIN_PRICES.items()}
    for model, price in budget.prices.items():
        prices[model] = BudgetFilePrice(input=price.input, output=price.output)
    return BudgetFile(
        limits=tuple(
            BudgetFileLimit(period=limit.period, max_usd=limit.max_usd) for limit in budget.limits
        ),
        alert_thresholds=tuple(budget.alert_thresholds),
        on_exhausted=budget.on_exhausted,
        downgrade_model=budget.downgrade_model,
        prices=dict(sorted(prices.items())),
        unknown_model_price=BudgetFilePrice(
            input=budget.unknown_model_price.input, output=budget.unknown_model_price.output
        ),
    )


def format_json(budget: BudgetFile) -> str:
    """JSON with one top-level key, or one price, per line: diffable, still short."""
    document: dict[str, Any] = budget.model_dump(mode="json", by_alias=True)
    lines = []
    for key, value in document.items():
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
        "data": {BUDGET_FILE: format_json(budget_file(agd))},
    }
