"""The operator's side of budgets on the real control plane: status.budget from the ledger.

SpendRecords are created here as admin (kubectl apply of `ledger.record_body`
with made-up pod uids) to stand in for the gateways. The pods run on the
cluster's simulated nodes (no gateway process in them), so the phase below
BudgetExhausted is Ready.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from tests.e2e.test_operator import (
    agd,
    apply,
    get,
    manifest,
    phase_ready,
    reconciles,
    source_secret,
    wait_for,
)

from agent_operator import ledger
from agent_operator.ledger import SpendRecordSpec
from localcluster import Cluster

if TYPE_CHECKING:
    from tests.e2e.conftest import OperatorProcess

pytestmark = pytest.mark.e2e

BUDGET = {"limits": [{"period": "day", "maxUSD": 1}], "alertThresholds": [0.5, 0.8]}
OFFSET_ENV = "AGENT_OPERATOR_CLOCK_OFFSET_SECONDS"


def clear_of_midnight(margin: float = 120.0) -> None:
    """Tests on the real clock need one UTC day throughout: wait out a boundary that is near."""
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if (midnight - now).total_seconds() < margin:
        time.sleep((midnight - now).total_seconds() + 1)


def start_agent(cluster: Cluster, namespace: str) -> str:
    """The AgentDeployment `bot` with a day limit of $1, once its status is written; its uid."""
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest(budget=BUDGET))
    body = wait_for(
        lambda: (b := agd(cluster, namespace)).get("status", {}).get("budget") and b,
        30,
        "status.budget",
    )
    uid: str = body["metadata"]["uid"]
    return uid


def spend(
    cluster: Cluster, namespace: str, owner: str, pod: str, usd: float, key: str | None = None
) -> None:
    """Write pod `pod`'s record as its gateway would: its cumulative USD in the period."""
    spec = SpendRecordSpec(
        agent="bot",
        period="day",
        period_key=key or ledger.period_key("day", time.time()),
        pod_name=f"bot-{pod[:8]}",
        pod_uid=pod,
        spent_usd=usd,
    )
    body = ledger.record_body(spec, namespace, owner)
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(body))


def budget(cluster: Cluster, namespace: str) -> dict[str, Any]:
    status = agd(cluster, namespace).get("status") or {}
    value: dict[str, Any] = status.get("budget") or {}
    return value


def spent_is(cluster: Cluster, namespace: str, usd: float) -> Callable[[], bool]:
    return lambda: abs(float(budget(cluster, namespace).get("spentUSD", -1)) - usd) < 1e-9


def events(cluster: Cluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    found = get(
        cluster,
        namespace,
        "events",
        "--field-selector",
        f"involvedObject.name=bot,reason={reason}",
    )
    assert found is not None
    items: list[dict[str, Any]] = found["items"]
    return items


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in body["status"]["conditions"]:
        if cond["type"] == type_:
            found: dict[str, Any] = cond
            return found
    raise AssertionError(f"no condition {type_}")


def records(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    found = get(cluster, namespace, "spendrecords", "-l", "agents.dev/agent=bot")
    assert found is not None
    return {r["metadata"]["name"]: r for r in found["items"]}


def metric(process: OperatorProcess, name: str, namespace: str) -> float | None:
    pattern = re.compile(
        rf'^{name}\{{agent="bot",namespace="{namespace}",period="day"\}} (\S+)$', re.M
    )
    match = pattern.search(process.metrics())
    return float(match.group(1)) if match else None


def settled_rollout(cluster: Cluster, namespace: str) -> None:
    """Wait until the Deployment controller is done with its status (a reconcile each)."""
    wait_for(lambda: phase_ready(cluster, namespace), 60, "the rollout's final status")
    time.sleep(3)


def test_status_budget_follows_the_ledger(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    clear_of_midnight()
    owner = start_agent(cluster, namespace)
    settled_rollout(cluster, namespace)
    assert budget(cluster, namespace) == {
        "period": "day",
        "spentUSD": 0,
        "limitUSD": 1,
        "remainingUSD": 1,
        "exhausted": False,
        "resetsAt": ledger.period_end("day", time.time()).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert condition(agd(cluster, namespace), "BudgetAvailable")["reason"] == "WithinBudget"
    before = reconciles(operator_process)
    writes = 0

    spend(cluster, namespace, owner, "pod-a", 0.3)
    spend(cluster, namespace, owner, "pod-b", 0.1)
    writes += 2
    wait_for(spent_is(cluster, namespace, 0.4), 10, "spentUSD 0.4")
    assert events(cluster, namespace, "BudgetThresholdCrossed") == []

    spend(cluster, namespace, owner, "pod-b", 0.25)  # 0.55: past 50%
    writes += 1
    wait_for(lambda: events(cluster, namespace, "BudgetThresholdCrossed"), 10, "the 50% Event")
    for usd in (0.32, 0.34, 0.36, 0.38):  # more writes below 80%: no more Events
        spend(cluster, namespace, owner, "pod-a", usd)
        writes += 1
    wait_for(spent_is(cluster, namespace, 0.63), 10, "spentUSD 0.63")
    time.sleep(1)
    crossed = events(cluster, namespace, "BudgetThresholdCrossed")
    assert [e["message"].split(":")[0] for e in crossed] == ["spend reached 50% of the day limit"]
    assert crossed[0]["type"] == "Warning"

    spend(cluster, namespace, owner, "pod-a", 0.6)  # 0.85: past 80%
    writes += 1
    wait_for(spent_is(cluster, namespace, 0.85), 10, "spentUSD 0.85")
    for usd in (0.61, 0.62, 0.63):
        spend(cluster, namespace, owner, "pod-a", usd)
        writes += 1
    wait_for(spent_is(cluster, namespace, 0.88), 10, "spentUSD 0.88")
    time.sleep(1)
    crossed = events(cluster, namespace, "BudgetThresholdCrossed")
    assert sorted(e["message"].split(":")[0] for e in crossed) == [
        "spend reached 50% of the day limit",
        "spend reached 80% of the day limit",
    ]
    body = agd(cluster, namespace)
    assert body["status"]["phase"] == "Ready"
    assert body["status"]["budget"]["remainingUSD"] == pytest.approx(0.12)

    spend(cluster, namespace, owner, "pod-c", 0.2)  # 1.08: exhausted
    writes += 1
    body = wait_for(
        lambda: (b := agd(cluster, namespace))["status"]["phase"] == "BudgetExhausted" and b,
        10,
        "phase BudgetExhausted",
    )
    status = body["status"]
    assert status["budget"]["exhausted"] is True and status["budget"]["remainingUSD"] == 0
    available = condition(body, "BudgetAvailable")
    assert (available["status"], available["reason"]) == ("False", "BudgetExhausted")
    assert "the day limit of $1.00 is exhausted: $1.08 spent; resets at" in available["message"]
    assert "Traceback" not in json.dumps(status)
    spend(cluster, namespace, owner, "pod-c", 0.3)
    writes += 1
    wait_for(spent_is(cluster, namespace, 1.18), 10, "spentUSD 1.18")
    time.sleep(1)
    assert len(events(cluster, namespace, "BudgetExhausted")) == 1
    assert len(events(cluster, namespace, "BudgetThresholdCrossed")) == 2
    assert metric(operator_process, "agent_operator_budget_spent_usd", namespace) == 1.18
    assert metric(operator_process, "agent_operator_budget_limit_usd", namespace) == 1.0

    # Record writes are not reconciles: the budget-only update handles them.
    grown = reconciles(operator_process) - before
    assert grown <= 2, f"{grown} reconciles for {writes} record writes"


def test_records_of_gone_pods_are_folded(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    clear_of_midnight()
    owner = start_agent(cluster, namespace)
    pods = wait_for(
        lambda: (p := get(cluster, namespace, "pods", "-l", "agents.dev/agent=bot")) and p["items"],
        30,
        "the Deployment's pod",
    )
    live = pods[0]["metadata"]["uid"]  # a pod that exists
    spend(cluster, namespace, owner, live, 0.25)
    spend(cluster, namespace, owner, "gone-1", 0.125)
    spend(cluster, namespace, owner, "gone-2", 0.0625)
    total = 0.4375
    wait_for(spent_is(cluster, namespace, total), 10, f"spentUSD {total}")
    key = ledger.period_key("day", time.time())
    settled = ledger.settled_name("bot", key)

    def folded() -> dict[str, dict[str, Any]] | None:
        # no spend lost, none counted twice, at every moment of the fold
        assert float(budget(cluster, namespace)["spentUSD"]) == pytest.approx(total)
        now = records(cluster, namespace)
        return now if settled in now and len(now) == 2 else None

    # records younger than 10 s wait; passes run 30 s apart at most
    after = wait_for(folded, 60, "the gone pods' records folded")
    spec = after[settled]["spec"]
    assert spec["spentUSD"] == pytest.approx(0.1875)
    assert sorted(spec["folded"]) == ["gone-1", "gone-2"]
    assert spec["podUID"] == "settled" and spec["periodKey"] == key
    refs = after[settled]["metadata"]["ownerReferences"]
    assert [(r["kind"], r["uid"], r.get("controller")) for r in refs] == [
        ("AgentDeployment", owner, None)
    ]
    assert ledger.record_name("bot", key, live) in after  # its pod lives: left alone
    time.sleep(2)
    assert float(budget(cluster, namespace)["spentUSD"]) == pytest.approx(total)
    # the settled record adds up with new spend
    spend(cluster, namespace, owner, "gone-3", 0.5)
    wait_for(spent_is(cluster, namespace, total + 0.5), 10, "spentUSD with a new record")


def test_period_rollover_resets_status(
    cluster: Cluster, namespace: str, make_operator: Callable[..., OperatorProcess]
) -> None:
    # The operator's clock is set 30 s before the end of a UTC day (its startup and the
    # first reconcile take a few of them); the records carry that day's period key.
    now = time.time()
    day_end = ledger.period_end("day", now).timestamp()
    offset = day_end - 30 - now
    operator = make_operator("operator", env={OFFSET_ENV: str(offset)})
    operator.start()
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest(budget=BUDGET))
    body = wait_for(
        lambda: (b := agd(cluster, namespace)).get("status", {}).get("budget") and b,
        30,
        "status.budget",
    )
    old_key = ledger.period_key("day", day_end - 1)
    spend(cluster, namespace, body["metadata"]["uid"], "pod-a", 1.5, old_key)
    body = wait_for(
        lambda: (b := agd(cluster, namespace))["status"]["phase"] == "BudgetExhausted" and b,
        10,
        "phase BudgetExhausted",
    )
    old_reset = body["status"]["budget"]["resetsAt"]
    assert datetime.fromisoformat(old_reset.replace("Z", "+00:00")).timestamp() == day_end
    assert time.time() + offset < day_end, "the boundary passed before the test could see it"

    # After the boundary (no new spend): the new period, nothing spent in it.
    body = wait_for(
        lambda: (b := agd(cluster, namespace))["status"]["budget"]["resetsAt"] != old_reset and b,
        day_end - (time.time() + offset) + 10,
        "status.budget of the new period",
    )
    status = body["status"]
    new_end = ledger.period_end("day", day_end + 1).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["budget"]["resetsAt"] == new_end
    assert status["budget"]["spentUSD"] == 0 and status["budget"]["exhausted"] is False
    assert status["phase"] == "Ready"
    assert condition(body, "BudgetAvailable")["status"] == "True"
    assert time.time() + offset - day_end < 5, "the reset came late"
