"""The shared spend ledger: one contract for the gateways that write it and the operator.

Pure. Spend lives in `SpendRecord` objects (group agents.dev, our own small
CRD; docs/budget.md says why not Leases or ConfigMaps):

- one record per pod per period, written only by that pod's gateway
  (`<agent>.<period-slug>.<pod-uid>`); it holds the pod's cumulative spend in
  the period, so a rewrite is idempotent and a lost answer costs nothing;
- one settled record per period (`<agent>.<period-slug>.settled`), written
  only by the operator: spend of pods that are gone, folded in, with the
  folded pods' uids so that a fold interrupted half-way never counts twice.

Every record is owned by its AgentDeployment (it outlives the pod, not the
agent). The total of a period is `settled + every pod record not folded`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_operator.api import API_VERSION, GROUP, KIND, VERSION
from agent_operator.sidecar import BudgetPeriod

RECORD_KIND: Final = "SpendRecord"
RECORD_PLURAL: Final = "spendrecords"
RECORD_API_VERSION: Final = f"{GROUP}/{VERSION}"
SETTLED: Final = "settled"  # the operator's record, in place of a pod uid
AGENT_LABEL: Final = "agents.dev/agent"
PERIOD_LABEL: Final = "agents.dev/period"

# The gateway's own identity (SPEC section 2): ServiceAccount, Role, RoleBinding.
GATEWAY_IDENTITY_SUFFIX: Final = "-gateway"
# Write policy of a gateway (docs/budget.md derives the overspend bound from it):
# a record is written when its unwritten spend reaches FLUSH_FRACTION of the
# smallest limit, or FLUSH_INTERVAL_SECONDS after the first unwritten charge,
# whichever comes first; never more often than MIN_WRITE_GAP_SECONDS.
FLUSH_INTERVAL_SECONDS: Final = 2.0
FLUSH_FRACTION: Final = 0.01
MIN_WRITE_GAP_SECONDS: Final = 0.25
# A gateway that has not heard from the API server for this long stops trusting
# its view of the other replicas' spend and refuses billed calls (fail closed).
STALE_AFTER_SECONDS: Final = 60.0


def gateway_identity(agent: str) -> str:
    """Name of the gateway's ServiceAccount, Role and RoleBinding."""
    return f"{agent}{GATEWAY_IDENTITY_SUFFIX}"


def gateway_username(namespace: str, agent: str) -> str:
    """The API server's user name for the gateway's service account."""
    return f"system:serviceaccount:{namespace}:{gateway_identity(agent)}"


# --- periods ------------------------------------------------------------------


def period_start(period: BudgetPeriod, now: float) -> datetime:
    """Start (UTC) of the calendar period containing `now` (epoch seconds)."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}")


def period_end(period: BudgetPeriod, now: float) -> datetime:
    """When the period containing `now` ends: the next one's start (status.budget.resetsAt)."""
    start = period_start(period, now)
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(weeks=1)
    return (start + timedelta(days=32)).replace(day=1)


def period_key(period: BudgetPeriod, now: float) -> str:
    """Calendar period (UTC) containing `now`, e.g. `month:2026-11`, `week:2026-W48`."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "hour":
        return f"hour:{moment:%Y-%m-%dT%H}"
    if period == "day":
        return f"day:{moment:%Y-%m-%d}"
    if period == "week":
        year, week, _ = moment.isocalendar()
        return f"week:{year}-W{week:02d}"
    if period == "month":
        return f"month:{moment:%Y-%m}"
    raise ValueError(f"unknown budget period {period!r}")


def period_slug(key: str) -> str:
    """A period key as a DNS label: `hour:2026-11-29T13` -> `hour-2026-11-29t13`."""
    return key.replace(":", "-").lower()


# --- records ----------------------------------------------------------------------


def record_name(agent: str, key: str, pod_uid: str) -> str:
    """Name of a pod's record (a DNS subdomain: at most 40 + 20 + 36 + 2 characters)."""
    return f"{agent}.{period_slug(key)}.{pod_uid}"


def settled_name(agent: str, key: str) -> str:
    return record_name(agent, key, SETTLED)


class SpendRecordSpec(BaseModel):
    """What a SpendRecord holds; the CRD's schema is generated from it."""

    model_config = ConfigDict(
        frozen=True, populate_by_name=True, extra="ignore", use_attribute_docstrings=True
    )

    agent: str = Field(min_length=1, max_length=63)
    """The AgentDeployment whose spend this is."""
    period: BudgetPeriod
    """hour, day, week or month."""
    period_key: str = Field(alias="periodKey", min_length=1, max_length=32)
    """The calendar window (UTC), e.g. day:2026-11-29."""
    pod_name: str = Field("", alias="podName", max_length=253)
    """The pod whose gateway writes this record; empty on the settled record."""
    pod_uid: str = Field(alias="podUID", min_length=1, max_length=64)
    """That pod's uid, or `settled` for the operator's record."""
    spent_usd: float = Field(0.0, alias="spentUSD", ge=0, allow_inf_nan=False)
    """USD spent in the window: by this pod, or by every folded pod (settled)."""
    folded: list[str] = Field([], max_length=10_000)
    """Settled record only: uids of the pod records already counted in spentUSD."""


def record_body(
    spec: SpendRecordSpec, namespace: str, agent_uid: str, resource_version: str | None = None
) -> dict[str, Any]:
    """The SpendRecord object for `spec`, owned (not controlled) by its AgentDeployment."""
    metadata: dict[str, Any] = {
        "name": record_name(spec.agent, spec.period_key, spec.pod_uid),
        "namespace": namespace,
        "labels": {AGENT_LABEL: spec.agent, PERIOD_LABEL: period_slug(spec.period_key)},
    }
    if agent_uid:
        metadata["ownerReferences"] = [
            {"apiVersion": API_VERSION, "kind": KIND, "name": spec.agent, "uid": agent_uid}
        ]
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": RECORD_API_VERSION,
        "kind": RECORD_KIND,
        "metadata": metadata,
        "spec": spec.model_dump(by_alias=True, exclude_defaults=False),
    }


def parse_record(body: Mapping[str, Any]) -> SpendRecordSpec | None:
    """The spec of a SpendRecord body; None when it does not validate (ignored, never fatal)."""
    try:
        return SpendRecordSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None


def totals(records: Iterable[SpendRecordSpec], agent: str) -> dict[str, float]:
    """USD per period key for `agent`: settled + pod records not yet folded into it."""
    records = [r for r in records if r.agent == agent]
    folded: dict[str, set[str]] = {}
    sums: dict[str, float] = {}
    for r in records:
        if r.pod_uid == SETTLED:
            folded[r.period_key] = set(r.folded)
            sums[r.period_key] = sums.get(r.period_key, 0.0) + r.spent_usd
    for r in records:
        if r.pod_uid != SETTLED and r.pod_uid not in folded.get(r.period_key, ()):
            sums[r.period_key] = sums.get(r.period_key, 0.0) + r.spent_usd
    return sums


def flush_delta(limits_usd: Iterable[float]) -> float:
    """Unwritten spend that triggers a write: FLUSH_FRACTION of the smallest limit."""
    smallest = min(limits_usd, default=0.0)
    return FLUSH_FRACTION * smallest
