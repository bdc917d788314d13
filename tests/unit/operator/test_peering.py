"""The peering gate: kopf's rule (a live peer of higher or equal priority wins) plus ours
(ties broken, a late keep-alive fences, a joining higher priority waits its turn)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import kopf

from agent_operator.operator import metrics
from agent_operator.operator.cache import ObjectCache
from agent_operator.operator.config import load
from agent_operator.operator.handlers import Runtime
from agent_operator.operator.peering import (
    FENCE_SECONDS,
    HANDOFF_SECONDS,
    Decision,
    PeeringMonitor,
    auto_priority,
    combine,
    decide,
    parse_peers,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def record(priority: int, seen_ago: float = 1, lifetime: int = 10) -> dict[str, object]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat(),
    }


def verdict(
    status: dict[str, Any], me: str = "me", priority: int = 10, settled: bool = True
) -> Decision:
    return decide(parse_peers(status), me, priority, NOW, settled)


def test_alone_or_highest_acts() -> None:
    assert verdict({"me": record(10)}).active
    assert verdict({"me": record(10), "other": record(5)}).active


def test_a_higher_live_peer_makes_us_stand_by() -> None:
    decision = verdict({"me": record(10), "other": record(20)})
    assert decision == Decision(False, standby_for="other")


def test_of_equal_priorities_the_greater_identity_steps_down() -> None:
    # kopf freezes both; the smaller identity waits for the other's lower record
    assert verdict({"b": record(10), "a": record(10)}, me="b") == Decision(
        False, standby_for="a", step_down=True
    )
    assert verdict({"a": record(10), "b": record(10)}, me="a") == Decision(
        False, standby_for="b", step_down=False
    )


def test_dead_or_malformed_peers_are_ignored() -> None:
    assert verdict({"me": record(10), "other": record(20, seen_ago=11)}).active
    assert verdict({"me": record(10), "other": {"priority": 20}}).active
    assert verdict({"me": record(10), "other": None, "x": {"lastseen": "soon"}}).active


def test_without_a_live_record_of_our_own_we_do_not_act() -> None:
    decision = verdict({"other": record(5)})
    assert not decision.active and decision.problem == "own keep-alive not seen yet"
    # peers take us for dead at lastseen + lifetime: we stop FENCE_SECONDS before
    late = verdict({"me": record(10, seen_ago=10 - FENCE_SECONDS)})
    assert not late.active and "own keep-alive is late" in (late.problem or "")
    assert verdict({"me": record(10, seen_ago=10 - FENCE_SECONDS - 0.5)}).active


def test_a_higher_priority_joining_waits_until_the_others_saw_it() -> None:
    joining = verdict({"me": record(10), "old": record(5)}, settled=False)
    assert joining == Decision(False, standby_for="old")
    assert verdict({"me": record(10)}, settled=False).active  # nobody to hand over from
    assert verdict({"me": record(10), "old": record(5, seen_ago=11)}, settled=False).active


def test_several_peering_objects_must_all_agree() -> None:
    assert combine([Decision(True), Decision(True)]).active
    mixed = combine([Decision(True), Decision(False, standby_for="x", problem="p")])
    assert mixed == Decision(False, standby_for="x", problem="p")


def test_auto_priorities_rank_the_earlier_start_first_below_explicit_ones() -> None:
    early, late = auto_priority(1_800_000_000.000, 1023), auto_priority(1_800_000_000.001, 0)
    assert 0 > early > late
    assert auto_priority(1_800_000_000.0, 1) != auto_priority(1_800_000_000.0, 2)
    assert abs(late) < 2**53  # exact in JSON and in a float gauge


class FakeKube:
    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, Any] | None] = {}
        self.fail: Exception | None = None

    def get_path(self, path: str) -> dict[str, Any] | None:
        if self.fail is not None:
            raise self.fail
        return self.bodies.get(path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


PATH = "/apis/kopf.dev/v1/namespaces/ns/kopfpeerings/p"


def monitor(kube: FakeKube, clock: Clock, mandatory: bool = True) -> PeeringMonitor:
    return PeeringMonitor(
        kube,  # type: ignore[arg-type]
        "p",
        "me",
        10,
        scopes=["ns"],
        mandatory=mandatory,
        lifetime=10,
        clock=clock,
    )


def gauge() -> float:
    value = metrics.REGISTRY.get_sample_value("agent_operator_peering_active")
    assert value is not None
    return value


def test_monitor_acts_on_transitions_and_shares_a_tie_break_with_kopf() -> None:
    kube, clock = FakeKube(), Clock()
    gate = monitor(kube, clock)
    settings = kopf.OperatorSettings()
    gate.bind(settings)
    assert (settings.peering.priority, settings.peering.lifetime) == (10, 10)
    changes: list[bool] = []
    gate.listeners.append(changes.append)

    assert not gate.evaluate(NOW).active  # not read yet
    kube.bodies[PATH] = {"status": {"me": record(10), "a-peer": record(10)}}  # "a-peer" < "me"
    gate.fetch()
    decision = gate.evaluate(NOW)
    assert decision == Decision(False, standby_for="a-peer")
    assert gate.priority == settings.peering.priority == 9  # stepped down, once
    assert gauge() == 0 and changes == []

    kube.bodies[PATH] = {"status": {"me": record(9)}}  # the other left
    gate.fetch()
    clock.now += HANDOFF_SECONDS
    assert gate.evaluate(NOW).active and gate.active
    assert gauge() == 1 and changes == [True]


def test_monitor_stops_acting_on_a_stale_view_or_a_missing_object() -> None:
    kube, clock = FakeKube(), Clock()
    gate = monitor(kube, clock)
    kube.bodies[PATH] = {"status": {"me": record(10)}}
    gate.fetch()
    assert gate.evaluate(NOW).active
    kube.fail = OSError("connection refused")
    clock.now += 4
    gate.fetch()
    assert gate.evaluate(NOW).active  # a failed GET or two changes nothing
    clock.now += 2  # half a lifetime without a read
    decision = gate.evaluate(NOW)
    assert not decision.active
    assert decision.problem == "KopfPeering ns/p not read lately: OSError: connection refused"

    kube.fail = None
    kube.bodies[PATH] = None
    gate.fetch()
    assert gate.evaluate(NOW).problem == "KopfPeering ns/p not found"
    relaxed = monitor(kube, clock, mandatory=False)  # kopf's auto-detection: acting alone
    relaxed.fetch()
    assert relaxed.evaluate(NOW).active


def test_without_peering_always_active() -> None:
    gate = PeeringMonitor(
        FakeKube(),  # type: ignore[arg-type]
        None,
        "me",
        0,
        scopes=[None],
        mandatory=False,
        lifetime=10,
    )
    assert gate.active and not gate.enabled and gate.evaluate().active


async def test_keys_met_while_a_peer_acts_are_reconciled_once_we_act() -> None:
    kube, clock = FakeKube(), Clock()
    gate = monitor(kube, clock)
    calls: list[tuple[str, str]] = []

    class Reconciler:
        ledger = None
        budget_writes: dict[Any, Any] = {}  # noqa: RUF012

        def reconcile(self, namespace: str, name: str, fresh: bool = False) -> SimpleNamespace:
            calls.append((namespace, name))
            return SimpleNamespace(
                outcome="synced",
                source=None,
                budget_in=None,
                problem=None,
                due_in=None,
                children=[],
            )

    runtime = Runtime(load([], {}), Reconciler(), gate, ObjectCache("agent-operator"))  # type: ignore[arg-type]
    await runtime.process(("ns", "bot"))
    assert calls == [] and runtime.parked == {("ns", "bot")}
    kube.bodies[PATH] = {"status": {"me": record(10)}}
    gate.fetch()
    assert gate.evaluate(NOW).active
    assert runtime.parked == set()
    await runtime.process(await runtime.queue.get())
    assert calls == [("ns", "bot")]
    await runtime.queue.shutdown()
