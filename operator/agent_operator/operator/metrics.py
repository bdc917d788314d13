"""Prometheus metrics of the operator (prefix agent_operator_)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY: Final = CollectorRegistry(auto_describe=True)

RECONCILES: Final = Counter(
    "agent_operator_reconcile_total",
    "Reconciles of AgentDeployments, by result (synced, problem, error, gone).",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS: Final = Counter(
    "agent_operator_reconcile_errors_total",
    "Reconciles that failed with an unexpected error (retried with backoff).",
    registry=REGISTRY,
)
RECONCILE_DURATION: Final = Histogram(
    "agent_operator_reconcile_duration_seconds",
    "Duration of one reconcile in seconds.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
WRITES: Final = Counter(
    "agent_operator_writes_total",
    "Write requests to the API server, by verb (apply, delete, status, create) and kind.",
    ["verb", "kind"],
    registry=REGISTRY,
)
MANAGED: Final = Gauge(
    "agent_operator_managed_objects",
    "Objects managed by this operator, by kind (AgentDeployments and their children).",
    ["kind"],
    registry=REGISTRY,
)
PEERING_ACTIVE: Final = Gauge(
    "agent_operator_peering_active",
    "1 while this replica acts (alone, or the active peer), 0 while it stands by.",
    registry=REGISTRY,
)
QUEUE_DEPTH: Final = Gauge(
    "agent_operator_queue_depth",
    "Keys waiting in the work queue.",
    registry=REGISTRY,
)
CREDENTIAL_AGE: Final = Gauge(
    "agent_operator_credential_age_seconds",
    "Seconds since the current key of a key Secret was issued.",
    ["namespace", "agentdeployment", "secret"],
    registry=REGISTRY,
)
CREDENTIAL_NEXT_ROTATION: Final = Gauge(
    "agent_operator_credential_next_rotation_timestamp_seconds",
    "When the current key of a key Secret is due for rotation (Unix time); no series "
    "for a key without a schedule.",
    ["namespace", "agentdeployment", "secret"],
    registry=REGISTRY,
)
ROTATIONS: Final = Counter(
    "agent_operator_credential_rotations_total",
    "Keys minted (first issue and rotations), by result (ok, error).",
    ["result"],
    registry=REGISTRY,
)
REVOCATIONS: Final = Counter(
    "agent_operator_credential_revocations_total",
    "Keys revoked at their issuer or dropped after their grace period, by result (ok, error).",
    ["result"],
    registry=REGISTRY,
)
BUDGET_SPENT: Final = Gauge(
    "agent_operator_budget_spent_usd",
    "USD spent in the current window of each budget limit (period: hour, day, week, month).",
    ["namespace", "agent", "period"],
    registry=REGISTRY,
)
BUDGET_LIMIT: Final = Gauge(
    "agent_operator_budget_limit_usd",
    "USD limit of each budget period (period: hour, day, week, month).",
    ["namespace", "agent", "period"],
    registry=REGISTRY,
)
PERIODS: Final = ("hour", "day", "week", "month")


def set_budget(namespace: str, name: str, spend: Mapping[str, tuple[float, float]]) -> None:
    """Set the budget series of an AgentDeployment: period -> (spent, limit) in USD.

    Periods it no longer limits lose their series.
    """
    for period in PERIODS:
        if period in spend:
            spent, limit = spend[period]
            BUDGET_SPENT.labels(namespace, name, period).set(spent)
            BUDGET_LIMIT.labels(namespace, name, period).set(limit)
        else:
            for gauge in (BUDGET_SPENT, BUDGET_LIMIT):
                with contextlib.suppress(KeyError):
                    gauge.remove(namespace, name, period)


def forget_budget(namespace: str, name: str) -> None:
    """Drop the budget series of a gone AgentDeployment."""
    set_budget(namespace, name, {})


def set_next_rotation(namespace: str, name: str, secret: str, due: float | None) -> None:
    """Set when a key is due (Unix time); None (no schedule) drops the series."""
    if due is not None:
        CREDENTIAL_NEXT_ROTATION.labels(namespace, name, secret).set(due)
    else:
        with contextlib.suppress(KeyError):
            CREDENTIAL_NEXT_ROTATION.remove(namespace, name, secret)


def forget_credentials(namespace: str, name: str) -> None:
    """Drop the key series of a gone AgentDeployment."""
    for secret in ("credentials", "client-keys"):
        for gauge in (CREDENTIAL_AGE, CREDENTIAL_NEXT_ROTATION):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name, secret)


KINDS: Final = (
    "AgentDeployment",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "ConfigMap",
    "Secret",
)


def set_managed(children_by_owner: Iterable[Iterable[str]]) -> None:
    """Set the managed-object gauge from the child kinds of every known AgentDeployment."""
    counts = dict.fromkeys(KINDS, 0)
    for kinds in children_by_owner:
        counts["AgentDeployment"] += 1
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
    for kind, count in counts.items():
        MANAGED.labels(kind=kind).set(count)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on `port` from a background thread (0 disables)."""
    if port:
        start_http_server(port, addr=address, registry=REGISTRY)
