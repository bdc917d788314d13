"""Status of an AgentDeployment, derived from its children: pure functions.

Conditions follow metav1.Condition: lastTransitionTime moves only when the
condition's status changes; reason and message may change in between.
Phase is a summary of the conditions; `BudgetExhausted` wins over every phase
but `Degraded`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from agent_operator.operator.problems import Problem

READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"
# Keys in place and their last step (mint, revoke) done. False while a step
# fails with a working key still in place: Ready is not affected then.
CREDENTIALS_READY: Final = "CredentialsReady"
# Spend below every limit of spec.budget (reason NoLimits when it has none).
BUDGET_AVAILABLE: Final = "BudgetAvailable"
CONDITION_TYPES: Final = (READY, PROGRESSING, DEGRADED, CREDENTIALS_READY, BUDGET_AVAILABLE)
KEY_FIELDS: Final = ("credentials", "clientKeys")  # status fields fed by the key Secrets
BUDGET_FIELD: Final = "budget"
BUDGET_EXHAUSTED: Final = "BudgetExhausted"  # a phase, a condition reason and an Event reason


def rfc3339(when: datetime) -> str:
    """UTC seconds, as Kubernetes writes times."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Rollout:
    """Where the Deployment's rollout stands."""

    complete: bool
    stalled: bool
    replicas: int
    ready: int
    message: str


def rollout(deployment: Mapping[str, Any]) -> Rollout:
    """Rollout state of a live Deployment body, like `kubectl rollout status` decides it."""
    spec_replicas = int(deployment.get("spec", {}).get("replicas", 1))
    status = deployment.get("status") or {}
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    observed = int(status.get("observedGeneration", 0))
    replicas = int(status.get("replicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    ready = int(status.get("readyReplicas", 0))
    stalled = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )
    if observed < generation:
        message = "waiting for the Deployment controller to observe the new generation"
    elif updated < spec_replicas:
        message = f"{updated} of {spec_replicas} replicas updated"
    elif replicas > updated:
        message = f"{replicas - updated} old replicas pending termination"
    elif available < spec_replicas:
        message = f"{available} of {spec_replicas} replicas available"
    elif spec_replicas > 0 and ready == 0:
        message = "no ready replicas"
    else:
        return Rollout(True, False, replicas, ready, f"{ready} of {spec_replicas} replicas ready")
    return Rollout(False, stalled, replicas, ready, message)


def condition(
    type_: str, status: bool | None, reason: str, message: str, generation: int
) -> dict[str, Any]:
    """A condition without its transition time (see `transition`)."""
    text = "Unknown" if status is None else ("True" if status else "False")
    return {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def transition(
    previous: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """`new` conditions with lastTransitionTime kept from `previous` unless status changed."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in new:
        old = before.get(cond["type"])
        same = old is not None and old.get("status") == cond["status"]
        if same and old is not None and old.get("lastTransitionTime"):
            when = old["lastTransitionTime"]
        else:
            when = rfc3339(now)
        out.append({**cond, "lastTransitionTime": when})
    return out


def _credentials_condition(
    problem: Problem | None, trouble: Problem | None, have_keys: bool, generation: int
) -> dict[str, Any]:
    """CredentialsReady: keys in place and their last step done."""
    if trouble is not None:
        return condition(CREDENTIALS_READY, False, trouble.reason, trouble.message, generation)
    if problem is not None and problem.reason.startswith(("Credentials", "Issuer")):
        return condition(CREDENTIALS_READY, False, problem.reason, problem.message, generation)
    if not have_keys:
        return condition(CREDENTIALS_READY, False, "NoKeys", "no key issued yet", generation)
    return condition(
        CREDENTIALS_READY, True, "KeysInPlace", "keys issued and up to date", generation
    )


def usd(amount: float) -> str:
    """`$12.40`; sub-cent amounts keep their digits (`$0.0042`)."""
    if amount == 0 or abs(amount) >= 0.01:
        return f"${amount:,.2f}"
    return f"${amount:.6f}".rstrip("0")


def budget_fraction(budget: Mapping[str, Any]) -> float:
    """spentUSD / limitUSD of a status.budget (0 when it cannot tell)."""
    try:
        spent, limit = float(budget["spentUSD"]), float(budget["limitUSD"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    if limit > 0:
        return spent / limit
    return math.inf if budget.get("exhausted") else 0.0


def budget_window(budget: Mapping[str, Any]) -> tuple[str, str, float]:
    """(period, resetsAt, limitUSD): the limit and calendar window a status.budget is about."""
    try:
        limit = float(budget.get("limitUSD") or 0.0)
    except (TypeError, ValueError):
        limit = 0.0
    return (str(budget.get("period")), str(budget.get("resetsAt")), limit)


def _spent(budget: Mapping[str, Any]) -> str:
    try:
        return usd(float(budget.get("spentUSD") or 0.0))
    except (TypeError, ValueError):
        return usd(0.0)


def exhausted_message(budget: Mapping[str, Any]) -> str:
    """Names the limit, the spend and when it resets (nothing else)."""
    period, resets_at, limit = budget_window(budget)
    return (
        f"the {period} limit of {usd(limit)} is exhausted: {_spent(budget)} spent; "
        f"resets at {resets_at}"
    )


def budget_condition(
    budget: Mapping[str, Any] | None, generation: int, store: str = "kubernetes"
) -> dict[str, Any]:
    """BudgetAvailable from status.budget (None: spec.budget has no limits, or its
    spend is kept where the operator does not read it: `store` redis)."""
    if budget is None and store == "redis":
        return condition(
            BUDGET_AVAILABLE,
            None,
            "SpendNotReported",
            "spend is kept in Redis (spec.budget.store), which the operator does not read; "
            "the gateways enforce the limits",
            generation,
        )
    if budget is None:
        return condition(
            BUDGET_AVAILABLE, True, "NoLimits", "spec.budget sets no limits", generation
        )
    if budget.get("exhausted"):
        return condition(
            BUDGET_AVAILABLE, False, BUDGET_EXHAUSTED, exhausted_message(budget), generation
        )
    period, resets_at, limit = budget_window(budget)
    message = (
        f"{_spent(budget)} of the {period} limit of {usd(limit)} spent "
        f"({budget_fraction(budget):.0%}); resets at {resets_at}"
    )
    return condition(BUDGET_AVAILABLE, True, "WithinBudget", message, generation)


def summary(phase: str, budget: Mapping[str, Any] | None) -> str:
    """The phase with the budget folded in: a Degraded problem wins over BudgetExhausted."""
    if budget is not None and budget.get("exhausted") and phase != DEGRADED:
        return BUDGET_EXHAUSTED
    return phase


def base_phase(conditions: Sequence[Mapping[str, Any]]) -> str:
    """The phase `derive_status` gives without a budget, read back from its conditions."""
    by_type = {c.get("type"): c for c in conditions}
    if by_type.get(DEGRADED, {}).get("status") == "True":
        return DEGRADED
    ready = by_type.get(READY, {})
    if ready.get("status") == "True":
        return READY
    return "Pending" if ready.get("reason") == "Pending" else PROGRESSING


def with_budget(
    previous: Mapping[str, Any],
    budget: Mapping[str, Any] | None,
    generation: int,
    now: datetime,
    store: str = "kubernetes",
) -> dict[str, Any]:
    """phase, conditions and budget of `previous` with `budget` folded in anew.

    The budget-only update: the other conditions are kept as the last full
    reconcile wrote them, so both give the same status for the same spend.
    """
    old = list(previous.get("conditions") or [])
    fresh = budget_condition(budget, generation, store)
    types = [c.get("type") for c in old]
    new = [fresh if c.get("type") == BUDGET_AVAILABLE else c for c in old]
    if BUDGET_AVAILABLE not in types:
        new.append(fresh)
    status: dict[str, Any] = {
        "phase": summary(base_phase(old), budget),
        "conditions": transition(old, new, now),
    }
    if budget is not None:
        status[BUDGET_FIELD] = dict(budget)
    return status


def _conditions(
    generation: int, deployment: Mapping[str, Any] | None, problem: Problem | None
) -> tuple[str, list[dict[str, Any]]]:
    state = rollout(deployment) if deployment is not None else None
    if state is None:
        progressing = condition(
            PROGRESSING, False, "NoDeployment", "the Deployment does not exist yet", generation
        )
    elif state.complete:
        progressing = condition(PROGRESSING, False, "RolloutComplete", state.message, generation)
    elif state.stalled:
        progressing = condition(
            PROGRESSING, False, "ProgressDeadlineExceeded", state.message, generation
        )
    else:
        progressing = condition(PROGRESSING, True, "RolloutInProgress", state.message, generation)

    if problem is not None:
        phase, reason, message = "Degraded", problem.reason, problem.message
    elif state is not None and state.stalled:
        phase, reason = "Degraded", "ProgressDeadlineExceeded"
        message = f"the Deployment exceeded its progress deadline: {state.message}"
    elif state is None:
        phase, reason, message = "Pending", "Pending", "children are being created"
    elif not state.complete:
        phase, reason, message = "Progressing", "RolloutInProgress", state.message
    else:
        phase, reason, message = "Ready", "Ready", state.message

    degraded = phase == "Degraded"
    conditions = [
        condition(READY, phase == "Ready", reason, message, generation),
        progressing,
        condition(
            DEGRADED,
            degraded,
            reason if degraded else "AsExpected",
            message if degraded else "no problem found",
            generation,
        ),
    ]
    return phase, conditions


def derive_status(
    generation: int,
    previous: Mapping[str, Any] | None,
    deployment: Mapping[str, Any] | None,
    problem: Problem | None,
    now: datetime,
    credentials: Mapping[str, str] | None = None,
    client_keys: Mapping[str, str] | None = None,
    trouble: Problem | None = None,
    budget: Mapping[str, Any] | None = None,
    store: str = "kubernetes",
) -> dict[str, Any]:
    """The status fields this operator owns.

    `deployment` is the live Deployment body (None when absent); `credentials`
    and `client_keys` are the status of the key Secrets (keyID, rotatedAt,
    nextRotationAt, previousExpiresAt); `trouble` a failed key step that left
    a working key in place (CredentialsReady=False, Ready unaffected);
    `budget` is status.budget (operator/budget.py; None: no limits) and
    `store` spec.budget.store (redis: the operator does not see the spend).
    """
    previous = previous or {}
    phase, conditions = _conditions(generation, deployment, problem)
    conditions.append(_credentials_condition(problem, trouble, bool(credentials), generation))
    conditions.append(budget_condition(budget, generation, store))
    deployment_status = (deployment or {}).get("status") or {}
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": summary(phase, budget),
        "conditions": transition(previous.get("conditions") or [], conditions, now),
        "replicas": int(deployment_status.get("replicas", 0)),
        "readyReplicas": int(deployment_status.get("readyReplicas", 0)),
    }
    for field, keys in zip(KEY_FIELDS, (credentials, client_keys), strict=True):
        if keys:
            status[field] = dict(keys)
    if budget is not None:
        status[BUDGET_FIELD] = dict(budget)
    return status


def status_patch(
    live: Mapping[str, Any] | None, new: Mapping[str, Any], clearable: Sequence[str] = ()
) -> dict[str, Any]:
    """The fields of `new` that differ from `live` (empty: no write needed).

    A field named in `clearable` that `new` lacks but `live` has is set to None,
    which a merge patch removes (`clientKeys` once clientAuth is switched off).
    """
    live = live or {}
    patch: dict[str, Any] = {
        key: None for key in clearable if key not in new and live.get(key) is not None
    }
    for key, value in new.items():
        have = live.get(key)
        if isinstance(value, Mapping) and isinstance(have, Mapping):
            if any(have.get(k) != v for k, v in value.items()):
                patch[key] = value
        elif have != value:
            patch[key] = value
    return patch
