from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_operator.gateway.budget import (
    DEFAULT_RESERVED_OUTPUT_TOKENS,
    Budget,
    BudgetConfig,
    BudgetFileError,
    Exhausted,
    Limit,
    Price,
    budget_from_json,
    load_budget,
    period_key,
    reservation_usd,
)
from agent_operator.gateway.spend import Hold, InMemorySpendStore


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


DOC: dict[str, Any] = {
    "limits": [{"period": "day", "maxUSD": 1.0}, {"period": "month", "maxUSD": 10.0}],
    "alertThresholds": [0.8, 0.5],
    "onExhausted": "reject",
    "prices": {
        "gpt-4o": {"input": 2.5, "output": 10.0},
        "gpt-4o-mini": {"input": 0.15, "output": 0.6},
    },
    "unknownModelPrice": {"input": 15.0, "output": 60.0},
}


def parse(doc: Any) -> BudgetConfig:
    return budget_from_json(json.dumps(doc))


def test_cost_is_usd_per_million_tokens() -> None:
    assert Price(2.5, 10.0).cost(1_000_000, 0) == 2.5
    assert Price(2.5, 10.0).cost(400, 100) == pytest.approx(0.002)


def test_price_lookup_exact_vendor_prefix_and_unknown() -> None:
    config = parse(DOC)
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
    ],
)
def test_periods_are_utc_calendar(period: str, moment: str, key: str) -> None:
    assert period_key(period, ts(moment)) == key


@given(st.floats(min_value=0, max_value=4e9))
def test_day_key_changes_only_at_midnight_utc(now: float) -> None:
    day_start = now - now % 86400
    assert period_key("day", day_start) == period_key("day", day_start + 86399.999)
    assert period_key("day", day_start) != period_key("day", day_start + 86400)


@pytest.mark.parametrize(
    ("bad", "names"),
    [
        ([], "Input should be an object"),
        ({"limits": [{"period": "fortnight", "maxUSD": 1}]}, "limits[0].period"),
        # the API has no `year`: a file with one is not ours, and refused
        ({"limits": [{"period": "year", "maxUSD": 1}]}, "limits[0].period"),
        ({"limits": [{"period": "day"}]}, "limits[0].maxUSD"),
        ({"limits": [{"period": "day", "maxUSD": -1}]}, "limits[0].maxUSD"),
        ({"onExhausted": "explode"}, "onExhausted"),
        ({"onExhausted": "downgrade"}, "downgradeModel"),
        ({"onExhausted": "downgrade", "downgradeModel": ""}, "downgradeModel"),
        ({"prices": {"m": {"input": "cheap", "output": 1}}}, "prices.m.input"),
        ({"prices": {"m": {"input": 1}}}, "prices.m.output"),
        ({"prices": {"m": {"input": -1, "output": 1}}}, "prices.m.input"),
        ({"unknownModelPrice": {"input": 0.0, "output": -1}}, "unknownModelPrice.output"),
        ({"alertThresholds": [1.5]}, "alertThresholds[0]"),
    ],
)
def test_parse_rejects_bad_documents_naming_the_field(bad: Any, names: str) -> None:
    with pytest.raises(BudgetFileError, match=re.escape(names)) as caught:
        parse(bad)
    assert str(caught.value).startswith("budget.json: ")


@pytest.mark.parametrize("text", ['{"limits": [{"period": "day", "maxUSD": NaN}]}', "Infinity"])
def test_numbers_must_be_finite(text: str) -> None:
    with pytest.raises(BudgetFileError):
        budget_from_json(text)


def test_unknown_keys_are_ignored() -> None:
    # a gateway still on the previous image reads what a newer operator writes
    assert parse({"limits": [], "futureField": 1}).limits == ()


def test_a_long_list_of_errors_is_cut_short() -> None:
    with pytest.raises(BudgetFileError, match=r"\(and 7 more\)$"):
        parse({"limits": [{"period": "x", "maxUSD": 1}] * 10})


def test_empty_document_has_no_limits() -> None:
    config = parse({})
    assert config.limits == () and config.on_exhausted == "reject"


async def charge(budget: Budget, config: BudgetConfig, usd: float, now: float) -> None:
    hold = await budget.admit(config, now)
    assert isinstance(hold, Hold), hold
    budget.settle(config, hold, usd)


async def test_exhaustion_names_the_first_limit_used_up() -> None:
    config = parse(DOC)
    budget = Budget(InMemorySpendStore(), lambda *a: None)
    now = ts("2026-11-25T12:00:00")
    await charge(budget, config, 0.99, now)
    await charge(budget, config, 0.02, now)
    hit = await budget.admit(config, now)
    assert isinstance(hit, Exhausted) and hit.limit == Limit("day", 1.0)
    assert hit.period_key == "day:2026-11-25" and hit.spent_usd == pytest.approx(1.01)
    # next day (an injected clock): the day limit resets, the month keeps counting
    tomorrow = ts("2026-11-26T00:00:00")
    assert isinstance(await budget.admit(config, tomorrow), Hold)
    assert budget.store.spent("month:2026-11") == pytest.approx(1.01)
    assert budget.store.spent("day:2026-11-26") == 0


async def test_a_call_admitted_before_midnight_is_charged_to_its_own_day() -> None:
    config = parse(DOC)
    budget = Budget(InMemorySpendStore(), lambda *a: None)
    hold = await budget.admit(config, ts("2026-11-25T23:59:59"))
    assert isinstance(hold, Hold)
    budget.settle(config, hold, 0.4)  # settled after midnight
    assert budget.store.spent("day:2026-11-25") == pytest.approx(0.4)
    assert budget.store.spent("day:2026-11-26") == 0


async def test_no_limits_admits_without_a_store_call() -> None:
    class Refusing(InMemorySpendStore):
        async def admit(self, *args: object) -> Hold | int:
            raise AssertionError("not asked")

    budget = Budget(Refusing(), lambda *a: None)
    hold = await budget.admit(BudgetConfig(), ts("2026-11-25T12:00:00"))
    assert hold == Hold(())
    budget.settle(BudgetConfig(), hold, 5.0)  # nothing to charge, nothing raised


async def test_alerts_fire_once_per_period_and_threshold() -> None:
    alerts: list[tuple[str, float]] = []
    config = parse(DOC)
    budget = Budget(
        InMemorySpendStore(),
        lambda limit, key, threshold, spent: alerts.append((key, threshold)),
    )
    now = ts("2026-11-25T12:00:00")
    for _ in range(9):
        await charge(budget, config, 0.1, now)
    assert alerts == [("day:2026-11-25", 0.5), ("day:2026-11-25", 0.8)]
    await charge(budget, config, 0.5, ts("2026-11-26T00:00:01"))
    assert alerts[-1] == ("day:2026-11-26", 0.5)
    assert ("month:2026-11", 0.5) not in alerts  # 1.4 of 10 USD


def test_reservation_uses_the_request_maximum_and_the_price() -> None:
    config = BudgetConfig(prices={"m": Price(1.0, 10.0)})
    capped = reservation_usd(config, "m", 4000, {"max_tokens": 100})
    assert capped == pytest.approx((1001 * 1.0 + 100 * 10.0) / 1e6)
    default = reservation_usd(config, "m", 0, {})
    assert default == pytest.approx((1 + DEFAULT_RESERVED_OUTPUT_TOKENS * 10.0) / 1e6)
    # absurd values are ignored, not trusted
    assert reservation_usd(config, "m", 0, {"max_tokens": -5}) == default
    assert reservation_usd(config, "m", 0, {"max_tokens": True}) == default
    assert reservation_usd(config, "m", 0, {"max_tokens": 10**12}) == default


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
        {"limits": [{"period": "day", "maxUSD": True}]},
        {"downgradeModel": 5},
    ],
)
def test_wrong_types_are_budget_file_errors(doc: dict[str, object]) -> None:
    # the reloader catches BudgetFileError; anything else used to end hot reload.
    # Strict: a string or a bool where a number belongs is refused, not coerced.
    with pytest.raises(BudgetFileError):
        parse(doc)


async def test_two_limits_of_one_period_charge_the_period_once() -> None:
    config = BudgetConfig(limits=(Limit("day", 5.0), Limit("day", 10.0)))
    store = InMemorySpendStore()
    budget = Budget(store, lambda *a: None)
    now = ts("2026-11-25T12:00:00")
    await charge(budget, config, 1.0, now)
    assert store.spent(period_key("day", now)) == 1.0  # was 2.0: charged once per limit
