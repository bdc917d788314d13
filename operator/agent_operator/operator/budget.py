"""Budget status from the spend ledger: pure functions (no client, no clock).

Inputs are the spec's limits, the ledger's totals per period key
(`ledger.totals`) and `now` (epoch seconds of the budget clock); outputs are
`status.budget`, the Events of threshold crossings, and the plan that folds
the records of gone pods into their period's settled record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from agent_operator import ledger
from agent_operator.api import Limit
from agent_operator.ledger import SpendRecordSpec
from agent_operator.operator.events import Event
from agent_operator.operator.status import (
    budget_fraction,
    budget_window,
    exhausted_message,
    rfc3339,
    usd,
)
from agent_operator.sidecar import BudgetPeriod

THRESHOLD_CROSSED: Final = "BudgetThresholdCrossed"
EXHAUSTED: Final = "BudgetExhausted"
# USD in status: micro-dollars, so that float noise (0.1 + 0.2) never shows or flaps.
_DIGITS: Final = 6


@dataclass(frozen=True)
class PeriodSpend:
    """Spend against one limit in its current calendar window (UTC)."""

    period: BudgetPeriod
    key: str  # ledger period key, e.g. day:2026-11-29
    spent_usd: float
    limit_usd: float
    resets_at: datetime

    @property
    def fraction(self) -> float:
        """spent / limit; infinite for a zero limit (every call is over it)."""
        return self.spent_usd / self.limit_usd if self.limit_usd > 0 else math.inf

    @property
    def exhausted(self) -> bool:
        return self.spent_usd >= self.limit_usd

    @property
    def remaining_usd(self) -> float:
        return round(max(self.limit_usd - self.spent_usd, 0.0), _DIGITS)


@dataclass(frozen=True)
class Evaluation:
    """The budget of one AgentDeployment at one moment, as status and Events show it."""

    status: dict[str, Any] | None  # status.budget; None: no limits
    spends: tuple[PeriodSpend, ...] = ()  # every limit, for the metrics
    events: tuple[Event, ...] = ()
    resets_in: float | None = None  # seconds until the first of the limits' windows ends
    store: str = "kubernetes"  # spec.budget.store; redis: no status.budget (not read here)


def spends(limits: Iterable[Limit], totals: Mapping[str, float], now: float) -> list[PeriodSpend]:
    """Spend of every limit in the window containing `now` (epoch seconds)."""
    out = []
    for limit in limits:
        key = ledger.period_key(limit.period, now)
        out.append(
            PeriodSpend(
                limit.period,
                key,
                round(totals.get(key, 0.0), _DIGITS),
                limit.max_usd,
                ledger.period_end(limit.period, now),
            )
        )
    return out


def tightest(candidates: Sequence[PeriodSpend]) -> PeriodSpend | None:
    """The limit status reports: an exhausted one first (of those, the one that blocks
    longest), else the highest spent/limit ratio (ties: least USD left, then spec order)."""
    if not candidates:
        return None
    exhausted = [s for s in candidates if s.exhausted]
    if exhausted:
        return max(exhausted, key=lambda s: s.resets_at)
    return max(candidates, key=lambda s: (s.fraction, -s.remaining_usd))


def budget_status(spend: PeriodSpend | None) -> dict[str, Any] | None:
    """status.budget for the reported limit (camelCase, as the API has it)."""
    if spend is None:
        return None
    return {
        "period": spend.period,
        "spentUSD": spend.spent_usd,
        "limitUSD": spend.limit_usd,
        "remainingUSD": spend.remaining_usd,
        "exhausted": spend.exhausted,
        "resetsAt": rfc3339(spend.resets_at),
    }


def threshold_events(
    previous: Mapping[str, Any] | None,
    current: Mapping[str, Any] | None,
    thresholds: Iterable[float],
    announced: float = 0.0,
) -> list[Event]:
    """Events for the alert thresholds the reported spend crossed since `previous`.

    Both are status.budget values. A crossing counts once per window (same
    period, resetsAt and limit): a re-evaluation at the same spend posts
    nothing, the next window starts again from zero. `announced` is the highest
    fraction already evaluated for current's window (in memory, 0 when
    unknown): it keeps a window that stopped being the tightest and became it
    again from being announced twice. Reaching 1 is `BudgetExhausted`, not a
    threshold.
    """
    if current is None:
        return []
    fraction = budget_fraction(current)
    baseline = announced
    if previous is not None and budget_window(previous) == budget_window(current):
        baseline = max(baseline, budget_fraction(previous))
    period, resets_at, limit = budget_window(current)
    spent = usd(float(current.get("spentUSD") or 0.0))
    events = [
        Event(
            "Warning",
            THRESHOLD_CROSSED,
            f"spend reached {mark:.0%} of the {period} limit: {spent} of {usd(limit)} "
            f"(resets at {resets_at})",
        )
        for mark in sorted(set(thresholds))
        if baseline < mark <= fraction and mark < 1
    ]
    if current.get("exhausted") and baseline < 1:
        events.append(Event("Warning", EXHAUSTED, exhausted_message(current)))
    return events


def evaluate(
    limits: Sequence[Limit],
    thresholds: Iterable[float],
    totals: Mapping[str, float],
    now: float,
    previous: Mapping[str, Any] | None,
    announced: Mapping[tuple[str, str, float], float] | None = None,
) -> Evaluation:
    """status.budget, its Events and when to look again, from the ledger's totals at `now`.

    `announced` maps status.budget windows (`budget_window`) to the highest
    fraction already evaluated in them (see `threshold_events`).
    """
    if not limits:
        return Evaluation(None)
    every = spends(limits, totals, now)
    status = budget_status(tightest(every))
    seen = (announced or {}).get(budget_window(status), 0.0) if status is not None else 0.0
    events = threshold_events(previous, status, thresholds, seen)
    resets_in = min(s.resets_at.timestamp() for s in every) - now
    return Evaluation(status, tuple(every), tuple(events), resets_in)


# --- folding the records of gone pods --------------------------------------------


@dataclass(frozen=True)
class Held:
    """A SpendRecord as listed: its spec and the metadata a fold needs."""

    name: str
    uid: str
    resource_version: str
    created: float  # epoch seconds (API server clock)
    spec: SpendRecordSpec


@dataclass(frozen=True)
class FoldPlan:
    """What one fold pass writes: pod records into settled ones, and records to delete."""

    fold: dict[str, list[Held]] = field(default_factory=dict)  # period key -> pod records
    delete: list[Held] = field(default_factory=list)
    retry_in: float | None = None  # seconds until a record left alone now is due


def fold_plan(
    records: Iterable[Held],
    live_pods: set[str],
    now: float,
    real_now: float,
    min_age: float,
    grace: float,
) -> FoldPlan:
    """Which records to fold and which to delete.

    `now` is the budget clock, `real_now` the wall clock that creation times
    are compared with (epoch seconds both). A pod record is folded when its
    pod is in no listing of the agent's pods and it is at least `min_age`
    seconds old (a pod just created may not be listed yet); it is deleted
    outright once the settled record names it (a fold interrupted between its
    two writes). Every record of a window that ended more than `grace`
    seconds ago is deleted (gateways' clocks may lag the operator's).
    """
    held = list(records)
    settled = {r.spec.period_key: r for r in held if r.spec.pod_uid == ledger.SETTLED}
    fold: dict[str, list[Held]] = {}
    delete: list[Held] = []
    retry: list[float] = []
    for r in held:
        spec = r.spec
        # keys of one period sort as their windows do
        if spec.period_key < ledger.period_key(spec.period, now - grace):
            delete.append(r)
            continue
        if spec.period_key < ledger.period_key(spec.period, now):  # ended, within the grace
            retry.append(ledger.period_end(spec.period, now - grace).timestamp() + grace - now)
        if spec.pod_uid == ledger.SETTLED or spec.pod_uid in live_pods:
            continue
        owner = settled.get(spec.period_key)
        if owner is not None and spec.pod_uid in owner.spec.folded:
            delete.append(r)
        elif real_now - r.created < min_age:
            retry.append(min_age - (real_now - r.created))
        else:
            fold.setdefault(spec.period_key, []).append(r)
    return FoldPlan(fold, delete, max(min(retry), 0.0) if retry else None)


def settle(
    settled: SpendRecordSpec | None,
    records: Sequence[SpendRecordSpec],
    present: set[str],
) -> SpendRecordSpec:
    """The settled record with `records` folded in.

    A record it already names is not added twice; uids whose records are
    gone (not in `present`) are dropped from `folded`, which keeps it short:
    a gone pod's token is void, so its record never comes back.
    """
    first = records[0]
    base = settled or SpendRecordSpec(
        agent=first.agent,
        period=first.period,
        period_key=first.period_key,
        pod_uid=ledger.SETTLED,
    )
    counted = set(base.folded)
    new = [r for r in records if r.pod_uid not in counted]
    spent = base.spent_usd + sum(r.spent_usd for r in new)
    folded = [uid for uid in base.folded if uid in present]
    folded += list(dict.fromkeys(r.pod_uid for r in new))
    return base.model_copy(update={"spent_usd": spent, "folded": folded})
