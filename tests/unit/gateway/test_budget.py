from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_operator.gateway.budget import (
    Budget,
    BudgetConfig,
    BudgetFileError,
    Limit,
    Price,
    load_budget,
    parse_budget,
    period_key,
)
from agent_operator.gateway.spend import InMemorySpendStore


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


DOC = {
    "limits": [{"period": "day", "maxUSD": 1.0}, {"period": "month", "maxUSD": 10.0}],
    "alertThresholds": [0.8, 0.5],
    "onExhausted": "reject",
    "prices": {
        "gpt-4o": {"input": 2.5, "output": 10.0},
        "gpt-4o-mini": {"input": 0.15, "output": 0.6},
    },
    "unknownModelPrice": {"input": 15.0, "output": 60.0},
}


def test_cost_is_usd_per_million_tokens() -> None:
    assert Price(2.5, 10.0).cost(1_000_000, 0) == 2.5
    assert Price(2.5, 10.0).cost(400, 100) == pytest.approx(0.002)


def test_price_lookup_exact_vendor_prefix_and_unknown() -> None:
    config = parse_budget(DOC)
    assert config.price_for("gpt-4o") == (Price(2.5, 10.0), True)
    assert config.price_for("gpt-4o-mini-2024-07-18") == (Price(0.15, 0.6), True)
    assert config.price_for("gpt-4o-2024-08-06") == (Price(2.5, 10.0), True)
    assert config.price_for("openai/gpt-4o") == (Price(2.5, 10.0), True)
    assert config.price_for("llama-3") == (Price(15.0, 60.0), False)


def test_unknown_price_is_never_free_when_absent() -> None:
    price, known = BudgetConfig().price_for("anything")
    assert not known and price.input > 0 and price.output > 0


@pytest.mark.parametrize(
    ("period", "moment", "key"),
    [
        ("hour", "2026-11-25T13:59:59", "hour:2026-11-25T13"),
        ("day", "2026-11-25T23:59:59", "day:2026-11-25"),
        ("day", "2026-11-26T00:00:00", "day:2026-11-26"),
        ("week", "2026-11-25T00:00:00", "week:2026-W48"),
        ("month", "2026-12-31T23:59:59", "month:2026-12"),
        ("month", "2027-01-01T00:00:00", "month:2027-01"),
        ("year", "2026-06-01T00:00:00", "year:2026"),
    ],
)
def test_periods_are_utc_calendar(period: str, moment: str, key: str) -> None:
    assert period_key(period, ts(moment)) == key


@given(st.floats(min_value=0, max_value=4e9))
def test_day_key_changes_only_at_midnight_utc(now: float) -> None:
    day_start = now - now % 86400
    assert period_key("day", day_start) == period_key("day", day_start + 86399.999)
    assert period_key("day", day_start) != period_key("day", day_start + 86400)


def test_parse_rejects_bad_documents() -> None:
    for bad in (
        [],
        {"limits": [{"period": "fortnight", "maxUSD": 1}]},
        {"onExhausted": "explode"},
        {"onExhausted": "downgrade"},
        {"prices": {"m": {"input": "cheap"}}},
    ):
        with pytest.raises(BudgetFileError):
            parse_budget(bad)


def test_empty_document_has_no_limits() -> None:
    config = parse_budget({})
    assert config.limits == () and config.on_exhausted == "reject"


def test_exhaustion_names_the_first_limit_used_up() -> None:
    budget = Budget(InMemorySpendStore(), parse_budget(DOC), lambda *a: None)
    now = ts("2026-11-25T12:00:00")
    assert budget.exhausted(now) is None
    budget.charge(0.99, now)
    assert budget.exhausted(now) is None
    budget.charge(0.02, now)
    hit = budget.exhausted(now)
    assert hit is not None and hit.limit == Limit("day", 1.0)
    assert hit.period_key == "day:2026-11-25" and hit.spent_usd == pytest.approx(1.01)
    # next day: the day limit resets, the month keeps counting
    tomorrow = ts("2026-11-26T00:00:00")
    assert budget.exhausted(tomorrow) is None
    assert budget.store.spent("month:2026-11") == pytest.approx(1.01)


def test_alerts_fire_once_per_period_and_threshold() -> None:
    alerts: list[tuple[str, float]] = []
    budget = Budget(
        InMemorySpendStore(),
        parse_budget(DOC),
        lambda limit, key, threshold, spent: alerts.append((key, threshold)),
    )
    now = ts("2026-11-25T12:00:00")
    for _ in range(10):
        budget.charge(0.1, now)
    assert alerts == [("day:2026-11-25", 0.5), ("day:2026-11-25", 0.8)]
    budget.charge(0.5, ts("2026-11-26T00:00:01"))
    assert alerts[-1] == ("day:2026-11-26", 0.5)
    assert ("month:2026-11", 0.5) not in alerts  # 1.5 of 10 USD


def test_load_budget_from_volume(tmp_path: Path) -> None:
    (tmp_path / "budget.json").write_text(json.dumps(DOC))
    loaded = load_budget(tmp_path)
    assert loaded is not None and loaded[0].limits[1] == Limit("month", 10.0)
    assert loaded[0].alert_thresholds == (0.5, 0.8)
    (tmp_path / "budget.json").write_text("{")
    with pytest.raises(BudgetFileError):
        load_budget(tmp_path)
    (tmp_path / "budget.json").unlink()
    with pytest.raises(BudgetFileError):
        load_budget(tmp_path)


@pytest.mark.parametrize(
    "doc",
    [
        {"limits": [{"period": "day", "maxUSD": "lots"}]},
        {"limits": [{"period": "day", "maxUSD": None}]},
        {"limits": "day"},
        {"prices": ["gpt-4o"]},
        {"alertThresholds": "0.5"},
        {"alertThresholds": [None]},
    ],
)
def test_wrong_types_are_budget_file_errors(doc: dict[str, object]) -> None:
    # the reloader catches BudgetFileError; anything else used to end hot reload
    with pytest.raises(BudgetFileError):
        parse_budget(doc)


def test_two_limits_of_one_period_charge_the_period_once() -> None:
    config = parse_budget(
        {"limits": [{"period": "day", "maxUSD": 5.0}, {"period": "day", "maxUSD": 10.0}]}
    )
    store = InMemorySpendStore()
    budget = Budget(store, config, lambda *a: None)
    now = ts("2026-11-25T12:00:00")
    budget.charge(1.0, now)
    assert store.spent(period_key("day", now)) == 1.0  # was 2.0: charged once per limit
