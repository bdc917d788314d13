"""The peering gate decides as kopf does: a live peer of higher or equal priority wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent_operator.operator.peering import may_act

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def peer(priority: int, seen_ago: float = 1, lifetime: int = 60) -> dict[str, object]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat(),
    }


def test_alone_or_highest_acts() -> None:
    assert may_act({}, "me", 10, NOW)
    assert may_act({"me": peer(10), "other": peer(5)}, "me", 10, NOW)


def test_higher_or_equal_live_peer_pauses_us() -> None:
    assert not may_act({"me": peer(10), "other": peer(20)}, "me", 10, NOW)
    assert not may_act({"me": peer(10), "other": peer(10)}, "me", 10, NOW)  # kopf freezes both


def test_dead_or_malformed_peers_are_ignored() -> None:
    assert may_act({"other": peer(20, seen_ago=61)}, "me", 10, NOW)
    assert may_act({"other": {"priority": 20}}, "me", 10, NOW)
    assert may_act({"other": None}, "me", 10, NOW)
