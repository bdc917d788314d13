"""Budget status, threshold Events and folding of the spend ledger: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent_operator import ledger
from agent_operator.api import Limit
from agent_operator.ledger import SpendRecordSpec
from agent_operator.operator import metrics
from agent_operator.operator.budget import (
    EXHAUSTED,
    THRESHOLD_CROSSED,
    Held,
    evaluate,
    fold_plan,
    settle,
    spends,
    threshold_events,
    tightest,
)
from agent_operator.operator.events import transition_events
from agent_operator.operator.problems import Problem
from agent_operator.operator.spendledger import SpendLedger
from agent_operator.operator.status import (
    BUDGET_AVAILABLE,
    base_phase,
    derive_status,
    status_patch,
    with_budget,
)
from agent_operator.sidecar import BudgetPeriod


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


NOW = ts(2026, 11, 25, 13, 20)  # a Wednesday
T0 = datetime(2026, 11, 25, 13, 20, tzinfo=UTC)


def limit(period: BudgetPeriod, usd: float) -> Limit:
    return Limit(period=period, max_usd=usd)


def deployment(ready: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": ready,
            "readyReplicas": ready,
        },
    }


def by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def budget_at(spent: float, limit_usd: float = 1.0, now: float = NOW) -> dict[str, Any]:
    key = ledger.period_key("day", now)
    result = evaluate([limit("day", limit_usd)], [], {key: spent}, now, None)
    assert result.status is not None
    return result.status


# --- status.budget ----------------------------------------------------------------


def test_tightest_limit_is_the_highest_ratio() -> None:
    totals = {"day:2026-11-25": 30.0, "month:2026-11": 900.0}
    result = evaluate([limit("day", 50), limit("month", 1000)], [], totals, NOW, None)
    assert result.status == {
        "period": "month",
        "spentUSD": 900.0,
        "limitUSD": 1000.0,
        "remainingUSD": 100.0,
        "exhausted": False,
        "resetsAt": "2026-12-01T00:00:00Z",
    }
    # the day limit reported once its ratio is higher
    totals["day:2026-11-25"] = 46.0
    result = evaluate([limit("day", 50), limit("month", 1000)], [], totals, NOW, None)
    assert result.status is not None
    assert result.status["period"] == "day"
    assert result.status["remainingUSD"] == 4.0
    assert [s.period for s in result.spends] == ["day", "month"]


def test_exhausted_first_and_the_one_that_blocks_longest() -> None:
    """Of several exhausted limits, the one that resets last, whatever its ratio."""
    totals = {"hour:2026-11-25T13": 10.0, "day:2026-11-25": 50.0, "month:2026-11": 1000.0}
    every = spends([limit("hour", 5), limit("day", 50), limit("month", 1000)], totals, NOW)
    assert [s.exhausted for s in every] == [True, True, True]
    assert every[0].fraction == 2.0 and every[2].fraction == 1.0
    chosen = tightest(every)
    assert chosen is not None and chosen.period == "month"
    # one exhausted: it is reported, not a limit close to its own
    totals = {"hour:2026-11-25T13": 4.99, "day:2026-11-25": 50.0, "month:2026-11": 50.0}
    chosen = tightest(
        spends([limit("hour", 5), limit("day", 50), limit("month", 1000)], totals, NOW)
    )
    assert chosen is not None and chosen.period == "day"


def test_ties_go_to_the_least_left() -> None:
    chosen = tightest(spends([limit("month", 1000), limit("day", 50)], {}, NOW))
    assert chosen is not None and chosen.period == "day" and chosen.spent_usd == 0


def test_remaining_never_negative_and_float_noise_rounded() -> None:
    status = budget_at(1.25)
    assert status["exhausted"] is True and status["remainingUSD"] == 0.0
    status = budget_at(0.1 + 0.2)
    assert status["spentUSD"] == 0.3 and status["remainingUSD"] == 0.7
    assert budget_at(1.0)["exhausted"] is True  # reaching the limit is exhausting it


def test_no_limits_no_budget_status() -> None:
    result = evaluate([], [0.5], {"day:2026-11-25": 3.0}, NOW, None)
    assert result.status is None and result.events == () and result.resets_in is None


@pytest.mark.parametrize(
    ("period", "now", "resets_at"),
    [
        ("hour", ts(2026, 11, 25, 13, 59, 59), "2026-11-25T14:00:00Z"),
        ("hour", ts(2026, 12, 31, 23, 0), "2027-01-01T00:00:00Z"),
        ("day", ts(2026, 11, 25, 23, 59, 59), "2026-11-26T00:00:00Z"),
        ("day", ts(2026, 2, 28, 12), "2026-03-01T00:00:00Z"),
        ("week", ts(2026, 11, 25, 13), "2026-11-30T00:00:00Z"),  # Wednesday -> Monday
        ("week", ts(2026, 11, 30, 0), "2026-12-07T00:00:00Z"),  # a Monday starts one
        ("week", ts(2026, 12, 29, 5), "2027-01-04T00:00:00Z"),  # across the new year
        ("month", ts(2026, 12, 31, 23, 59), "2027-01-01T00:00:00Z"),
        ("month", ts(2028, 2, 29, 1), "2028-03-01T00:00:00Z"),  # leap year
    ],
)
def test_resets_at_the_next_utc_boundary(period: BudgetPeriod, now: float, resets_at: str) -> None:
    result = evaluate([limit(period, 10)], [], {}, now, None)
    assert result.status is not None and result.status["resetsAt"] == resets_at
    boundary = datetime.fromisoformat(resets_at.replace("Z", "+00:00")).timestamp()
    assert result.resets_in == pytest.approx(boundary - now)


def test_resets_in_is_the_first_window_to_end() -> None:
    now = ts(2026, 11, 25, 23, 30)
    result = evaluate([limit("month", 100), limit("day", 5)], [], {}, now, None)
    assert result.resets_in == pytest.approx(30 * 60)


def test_spend_of_the_previous_period_does_not_count() -> None:
    before, after = ts(2026, 11, 25, 23, 59, 55), ts(2026, 11, 26, 0, 0, 1)
    totals = {ledger.period_key("day", before): 2.0}
    assert budget_at(2.0, now=before)["exhausted"] is True
    result = evaluate([limit("day", 1)], [], totals, after, budget_at(2.0, now=before))
    assert result.status is not None
    assert result.status["spentUSD"] == 0 and not result.status["exhausted"]
    assert result.status["resetsAt"] == "2026-11-27T00:00:00Z"
    assert result.events == ()


# --- phase and BudgetAvailable ----------------------------------------------------------


def test_no_limits_is_budget_available() -> None:
    status = derive_status(1, None, deployment(), None, T0)
    cond = by_type(status)[BUDGET_AVAILABLE]
    assert (cond["status"], cond["reason"]) == ("True", "NoLimits")
    assert "budget" not in status and status["phase"] == "Ready"


def test_spend_kept_in_redis_is_not_reported_as_zero() -> None:
    status = derive_status(1, None, deployment(), None, T0, store="redis")
    cond = by_type(status)[BUDGET_AVAILABLE]
    assert (cond["status"], cond["reason"]) == ("Unknown", "SpendNotReported")
    assert "budget" not in status and status["phase"] == "Ready"


def test_within_budget() -> None:
    status = derive_status(1, None, deployment(), None, T0, budget=budget_at(0.4))
    cond = by_type(status)[BUDGET_AVAILABLE]
    assert (cond["status"], cond["reason"]) == ("True", "WithinBudget")
    assert "$0.40" in cond["message"] and "$1.00" in cond["message"] and "40%" in cond["message"]
    assert status["phase"] == "Ready" and status["budget"]["spentUSD"] == 0.4


def test_exhausted_sets_the_phase_and_the_condition() -> None:
    status = derive_status(1, None, deployment(), None, T0, budget=budget_at(1.2))
    cond = by_type(status)[BUDGET_AVAILABLE]
    assert status["phase"] == "BudgetExhausted"
    assert (cond["status"], cond["reason"]) == ("False", "BudgetExhausted")
    assert cond["message"] == (
        "the day limit of $1.00 is exhausted: $1.20 spent; resets at 2026-11-26T00:00:00Z"
    )
    # conditions stay the truth: the rollout is still complete
    assert by_type(status)["Ready"]["status"] == "True"
    # exhausted wins over Progressing and Pending too
    progressing = derive_status(1, None, deployment(ready=0), None, T0, budget=budget_at(1.2))
    pending = derive_status(1, None, None, None, T0, budget=budget_at(1.2))
    assert progressing["phase"] == pending["phase"] == "BudgetExhausted"


def test_degraded_wins_over_budget_exhausted() -> None:
    problem = Problem("CredentialsSecretMissing", "Secret upstream not found")
    status = derive_status(1, None, deployment(), problem, T0, budget=budget_at(1.2))
    assert status["phase"] == "Degraded"
    assert by_type(status)[BUDGET_AVAILABLE]["status"] == "False"
    assert by_type(status)["Degraded"]["reason"] == "CredentialsSecretMissing"


def test_limits_removed_clear_status_budget() -> None:
    live = derive_status(1, None, deployment(), None, T0, budget=budget_at(0.4))
    new = derive_status(1, live, deployment(), None, T0)
    assert status_patch(live, new, ("budget",))["budget"] is None


@pytest.mark.parametrize(
    ("deploy", "problem"),
    [
        (None, None),
        (deployment(ready=0), None),
        (deployment(), None),
        (deployment(), Problem("ChildConflict", "taken")),
    ],
)
@pytest.mark.parametrize("spent", [0.2, 1.5])
def test_budget_only_update_agrees_with_the_full_status(
    deploy: dict[str, Any] | None, problem: Problem | None, spent: float
) -> None:
    """The light update (with_budget) and derive_status give the same phase and conditions."""
    without = derive_status(1, None, deploy, problem, T0)
    assert base_phase(without["conditions"]) == without["phase"]
    full = derive_status(1, without, deploy, problem, T0, budget=budget_at(spent))
    light = with_budget(without, budget_at(spent), 1, T0)
    assert light["phase"] == full["phase"]
    assert light["conditions"] == full["conditions"]
    assert light["budget"] == full["budget"]
    # and once written, neither has anything more to say
    written = {**without, **light}
    assert status_patch(written, with_budget(written, budget_at(spent), 1, T0)) == {}
    assert (
        status_patch(
            written, derive_status(1, written, deploy, problem, T0, budget=budget_at(spent))
        )
        == {}
    )


def test_budget_only_update_back_below_the_limit() -> None:
    exhausted = derive_status(1, None, deployment(ready=0), None, T0, budget=budget_at(1.2))
    assert exhausted["phase"] == "BudgetExhausted"
    light = with_budget(exhausted, budget_at(0.0, now=ts(2026, 11, 26, 0, 0, 1)), 1, T0)
    assert light["phase"] == "Progressing"
    assert by_type(light)[BUDGET_AVAILABLE]["reason"] == "WithinBudget"


def test_phase_event_of_budget_exhausted_is_the_budget_warning() -> None:
    ready = derive_status(1, None, deployment(), None, T0, budget=budget_at(0.4))
    exhausted = derive_status(1, ready, deployment(), None, T0, budget=budget_at(1.2))
    assert transition_events(ready, exhausted, []) == []
    back = derive_status(1, exhausted, deployment(), None, T0, budget=budget_at(0.0))
    assert [(e.type, e.reason) for e in transition_events(exhausted, back, [])] == [
        ("Normal", "Ready")
    ]


# --- threshold Events ---------------------------------------------------------------------


def reasons(events: Any) -> list[tuple[str, str]]:
    return [(e.reason, e.message.split(":")[0]) for e in events]


def test_each_threshold_once_per_crossing() -> None:
    marks = [0.5, 0.8]
    first = threshold_events(budget_at(0.3), budget_at(0.55), marks)
    assert reasons(first) == [(THRESHOLD_CROSSED, "spend reached 50% of the day limit")]
    assert "$0.55 of $1.00" in first[0].message
    assert all(e.type == "Warning" for e in first)
    # re-evaluation at the same or a higher spend below the next mark: nothing
    assert threshold_events(budget_at(0.55), budget_at(0.55), marks) == []
    assert threshold_events(budget_at(0.55), budget_at(0.7), marks) == []
    second = threshold_events(budget_at(0.7), budget_at(0.85), marks)
    assert reasons(second) == [(THRESHOLD_CROSSED, "spend reached 80% of the day limit")]
    exhausted = threshold_events(budget_at(0.85), budget_at(1.0), marks)
    assert [e.reason for e in exhausted] == [EXHAUSTED]
    assert (
        "$1.00" in exhausted[0].message and "resets at 2026-11-26T00:00:00Z" in exhausted[0].message
    )
    assert threshold_events(budget_at(1.0), budget_at(1.3), marks) == []


def test_a_jump_crosses_every_mark_on_the_way() -> None:
    events = threshold_events(None, budget_at(1.1), [0.5, 0.8, 1.0])
    assert [e.reason for e in events] == [THRESHOLD_CROSSED, THRESHOLD_CROSSED, EXHAUSTED]


def test_the_next_period_starts_again() -> None:
    tomorrow = ts(2026, 11, 26, 9)
    events = threshold_events(budget_at(0.9), budget_at(0.6, now=tomorrow), [0.5, 0.8])
    assert [e.reason for e in events] == [THRESHOLD_CROSSED]
    assert "resets at 2026-11-27T00:00:00Z" in events[0].message


def test_a_new_limit_is_a_new_window() -> None:
    events = threshold_events(budget_at(0.6, limit_usd=10), budget_at(0.6, limit_usd=1), [0.5])
    assert [e.reason for e in events] == [THRESHOLD_CROSSED]


def test_memory_keeps_a_window_that_comes_back_quiet() -> None:
    """The month reported, then the day, then the month again: its 50% is not repeated."""
    month = evaluate([limit("month", 100)], [0.5], {"month:2026-11": 60.0}, NOW, None)
    assert month.status is not None and [e.reason for e in month.events] == [THRESHOLD_CROSSED]
    announced = {("month", month.status["resetsAt"], 100.0): 0.6}
    limits = [limit("day", 10), limit("month", 100)]
    day = evaluate(limits, [0.5], {"month:2026-11": 60.0, "day:2026-11-25": 9.0}, NOW, month.status)
    assert day.status is not None and day.status["period"] == "day"
    tomorrow = ts(2026, 11, 26, 1)
    again = evaluate(limits, [0.5], {"month:2026-11": 61.0}, tomorrow, day.status, announced)
    assert again.status is not None and again.status["period"] == "month"
    assert again.events == ()
    # without the memory (a restart) it would be announced again: the status alone forgets
    assert evaluate(limits, [0.5], {"month:2026-11": 61.0}, tomorrow, day.status).events


def test_no_events_without_limits_or_below_every_mark() -> None:
    assert threshold_events(None, None, [0.5]) == []
    assert threshold_events(None, budget_at(0.1), [0.5]) == []


# --- folding ---------------------------------------------------------------------------


def record(
    uid: str,
    usd: float,
    key: str = "day:2026-11-25",
    created: float = NOW - 60,
    folded: list[str] | None = None,
) -> Held:
    spec = SpendRecordSpec(
        agent="bot",
        period="day",
        period_key=key,
        pod_uid=uid,
        pod_name="" if uid == ledger.SETTLED else f"bot-{uid}",
        spent_usd=usd,
        folded=folded or [],
    )
    return Held(ledger.record_name("bot", key, uid), f"uid-{uid}", "1", created, spec)


def test_totals_ignore_folded_records() -> None:
    specs = [
        record("a", 0.5).spec,
        record("b", 0.25).spec,
        record(ledger.SETTLED, 0.75, folded=["a"]).spec,  # a is in it already
    ]
    assert ledger.totals(specs, "bot") == {"day:2026-11-25": 1.0}


def test_fold_plan() -> None:
    records = [
        record("live", 1.0),
        record("gone", 0.5),
        record("young", 0.1, created=NOW - 3),
        record("done", 0.2),
        record(ledger.SETTLED, 0.2, folded=["done"]),
        record("old", 0.4, key="day:2026-11-23"),
        record(ledger.SETTLED, 3.0, key="day:2026-11-23"),
    ]
    plan = fold_plan(records, {"live"}, NOW, NOW, min_age=10, grace=60)
    assert {k: [h.spec.pod_uid for h in v] for k, v in plan.fold.items()} == {
        "day:2026-11-25": ["gone"]
    }
    # folded before a crash, and every record of a window long ended
    assert sorted(h.name for h in plan.delete) == [
        "bot.day-2026-11-23.old",
        "bot.day-2026-11-23.settled",
        "bot.day-2026-11-25.done",
    ]
    assert plan.retry_in == pytest.approx(7)


def test_fold_plan_waits_out_the_grace_after_a_boundary() -> None:
    just_after = ts(2026, 11, 26, 0, 0, 20)
    plan = fold_plan([record("gone", 0.5)], set(), just_after, just_after, 10, 60)
    assert plan.delete == []
    assert plan.retry_in == pytest.approx(40)
    later = ts(2026, 11, 26, 0, 1, 1)
    assert [
        h.spec.pod_uid for h in fold_plan([record("gone", 0.5)], set(), later, later, 10, 60).delete
    ] == ["gone"]


def test_settle_adds_once_and_keeps_folded_short() -> None:
    first = settle(None, [record("a", 0.5).spec, record("b", 0.25).spec], {"a", "b"})
    assert first.pod_uid == ledger.SETTLED and first.period_key == "day:2026-11-25"
    assert first.spent_usd == 0.75 and first.folded == ["a", "b"]
    # a fold retried after a crash between its two writes adds nothing twice
    again = settle(first, [record("a", 0.5).spec, record("c", 1.0).spec], {"a", "b", "c"})
    assert again.spent_usd == 1.75 and again.folded == ["a", "b", "c"]
    # uids whose records are gone leave the list
    later = settle(again, [record("d", 0.25).spec], {"c", "d"})
    assert later.spent_usd == 2.0 and later.folded == ["c", "d"]
    body = ledger.record_body(later, "ns", "agd-uid")
    assert body["metadata"]["name"] == "bot.day-2026-11-25.settled"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "agd-uid"
    assert "controller" not in body["metadata"]["ownerReferences"][0]


# --- the index ---------------------------------------------------------------------------


class ListingKube:
    """Only what priming calls: a LIST of the agent's records."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.lists = 0

    def list_objects(
        self, kind: str, namespace: str, selector: str = "", cached: bool = False
    ) -> list[dict[str, Any]]:
        self.lists += 1
        return self.items


def body(uid: str, usd: float, owner: str = "agd-1", name: str | None = None) -> dict[str, Any]:
    spec = SpendRecordSpec(
        agent="bot", period="day", period_key="day:2026-11-25", pod_uid=uid, spent_usd=usd
    )
    out = ledger.record_body(spec, "ns", owner)
    if name is not None:
        out["metadata"]["name"] = name
    return out


def test_index_primed_once_then_fed_by_the_watch() -> None:
    kube = ListingKube([body("a", 0.5), body("b", 0.25)])
    spend = SpendLedger(kube, clock=lambda: NOW)  # type: ignore[arg-type]
    assert spend.observe("ADDED", body("b", 0.3)) == ("ns", "bot")  # watch first: it wins
    assert spend.totals("ns", "bot", "agd-1") == {"day:2026-11-25": 0.8}
    assert spend.observe("MODIFIED", body("a", 0.7)) == ("ns", "bot")
    assert spend.observe("DELETED", body("b", 0.3)) == ("ns", "bot")
    assert spend.totals("ns", "bot", "agd-1") == {"day:2026-11-25": 0.7}
    assert kube.lists == 1


def test_index_ignores_bad_records_and_other_owners() -> None:
    spend = SpendLedger(ListingKube([]), clock=lambda: NOW)  # type: ignore[arg-type]
    spend.observe(None, body("a", 0.5))
    spend.observe(None, body("x", 9.0, owner="an-older-agd"))  # same name, deleted, made again
    bad = body("z", 1.0)
    bad["spec"]["spentUSD"] = -5
    assert spend.observe(None, bad) is None
    assert spend.totals("ns", "bot", "agd-1") == {"day:2026-11-25": 0.5}
    # a record that turns invalid stops counting
    broken = body("a", 0.5)
    broken["spec"]["period"] = "decade"
    assert spend.observe("MODIFIED", broken) == ("ns", "bot")
    assert spend.totals("ns", "bot", "agd-1") == {}


def test_budget_metrics_set_and_forgotten() -> None:
    metrics.set_budget("ns", "bot", {"day": (0.5, 1.0), "month": (3.0, 10.0)})
    sample = metrics.REGISTRY.get_sample_value
    labels = {"namespace": "ns", "agent": "bot", "period": "day"}
    assert sample("agent_operator_budget_spent_usd", labels) == 0.5
    assert sample("agent_operator_budget_limit_usd", labels) == 1.0
    metrics.set_budget("ns", "bot", {"month": (3.0, 10.0)})
    assert sample("agent_operator_budget_spent_usd", labels) is None
    metrics.forget_budget("ns", "bot")
    assert sample("agent_operator_budget_limit_usd", {**labels, "period": "month"}) is None
