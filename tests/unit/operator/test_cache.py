"""The informer-style index of watched objects (operator/cache.py)."""

from __future__ import annotations

from typing import Any

from agent_operator.operator.cache import ObjectCache

OURS = {"app.kubernetes.io/managed-by": "agent-operator"}


def body(name: str, version: int, labels: dict[str, str] | None = None, **more: Any) -> dict:
    meta = {"name": name, "namespace": "ns", "resourceVersion": str(version), "uid": f"u-{name}"}
    if labels is not None:
        meta["labels"] = labels
    meta["managedFields"] = [{"manager": "x"}]
    return {"metadata": meta, "spec": {"v": version}, **more}


def listed(cache: ObjectCache, kind: str, *bodies: dict, scope: str | None = "ns") -> None:
    cache.listing(kind, scope)
    for b in bodies:
        cache.observe(kind, scope, None, b)
    cache.listed(kind, scope)


def test_a_miss_means_absent_only_after_a_complete_listing() -> None:
    cache = ObjectCache("agent-operator")
    assert not cache.known("Service", "ns")
    cache.listing("Service", "ns")
    cache.observe("Service", "ns", None, body("a", 1, OURS))
    assert not cache.known("Service", "ns")  # listing under way
    cache.listed("Service", "ns")
    assert cache.known("Service", "ns")
    assert cache.get("Service", "ns", "a") is not None
    assert cache.get("Service", "ns", "b") is None
    assert not cache.known("Service", "other")
    cache.ended("Service", "ns")
    assert not cache.known("Service", "ns")  # a stopped stream may go stale


def test_a_cluster_wide_listing_covers_every_namespace() -> None:
    cache = ObjectCache("agent-operator")
    listed(cache, "Service", scope=None)
    assert cache.known("Service", "any")


def test_ours_are_kept_whole_others_by_metadata_only() -> None:
    cache = ObjectCache("agent-operator", whole=("AgentDeployment",))
    listed(cache, "ConfigMap", body("ours", 1, OURS), body("theirs", 2, {"app": "x"}))
    listed(cache, "AgentDeployment", body("agent", 3))
    assert cache.get("ConfigMap", "ns", "ours")["spec"] == {"v": 1}  # type: ignore[index]
    theirs = cache.get("ConfigMap", "ns", "theirs")
    assert theirs == {
        "metadata": {
            "name": "theirs",
            "namespace": "ns",
            "resourceVersion": "2",
            "uid": "u-theirs",
            "labels": {"app": "x"},
        }
    }
    assert cache.get("AgentDeployment", "ns", "agent")["spec"] == {"v": 3}  # type: ignore[index]


def test_managed_fields_are_kept_only_where_they_are_read() -> None:
    cache = ObjectCache("agent-operator", field_owners=("Deployment",))
    listed(cache, "Deployment", body("bot", 1, OURS))
    listed(cache, "Service", body("bot", 2, OURS))
    assert cache.get("Deployment", "ns", "bot")["metadata"]["managedFields"]  # type: ignore[index]
    service = cache.get("Service", "ns", "bot")
    assert service is not None and "managedFields" not in service["metadata"]
    assert service["metadata"]["uid"] == "u-bot" and service["spec"] == {"v": 2}


def test_metadata_only_kinds_keep_no_data_even_when_ours() -> None:
    cache = ObjectCache("agent-operator", metadata_only=("Secret",))
    listed(cache, "Secret", body("keys", 1, OURS, data={"current": "c2stMQ=="}))
    held = cache.get("Secret", "ns", "keys")
    assert held is not None and set(held) == {"metadata"}
    assert "managedFields" not in held["metadata"]


def test_a_relisting_drops_what_was_deleted_during_the_gap() -> None:
    cache = ObjectCache("agent-operator")
    listed(cache, "Service", body("a", 1, OURS), body("b", 2, OURS))
    listed(cache, "Secret", body("s", 3, OURS))
    cache.ended("Service", "ns")
    listed(cache, "Service", body("b", 4, OURS))  # a went while nobody watched
    assert cache.get("Service", "ns", "a") is None
    assert cache.get("Service", "ns", "b")["spec"] == {"v": 4}  # type: ignore[index]
    assert cache.get("Secret", "ns", "s") is not None  # another kind's listing is not touched


def test_deleted_events_remove() -> None:
    cache = ObjectCache("agent-operator")
    listed(cache, "Service", body("a", 1, OURS))
    cache.observe("Service", "ns", "DELETED", body("a", 2, OURS))
    assert cache.get("Service", "ns", "a") is None


def test_our_write_is_seen_at_once_and_its_event_is_an_echo() -> None:
    cache = ObjectCache("agent-operator")
    listed(cache, "Deployment", body("bot", 5, OURS))
    cache.wrote("Deployment", body("bot", 9, OURS))
    assert cache.get("Deployment", "ns", "bot")["spec"] == {"v": 9}  # type: ignore[index]
    # an event older than the write's answer arrives late: the write stays
    cache.observe("Deployment", "ns", "MODIFIED", body("bot", 7, OURS))
    assert cache.get("Deployment", "ns", "bot")["spec"] == {"v": 9}  # type: ignore[index]
    assert not cache.is_echo("Deployment", body("bot", 7, OURS))
    cache.observe("Deployment", "ns", "MODIFIED", body("bot", 9, OURS))
    assert cache.is_echo("Deployment", body("bot", 9, OURS))
    # someone else's later change is news
    cache.observe("Deployment", "ns", "MODIFIED", body("bot", 12, OURS))
    assert not cache.is_echo("Deployment", body("bot", 12, OURS))
    assert cache.get("Deployment", "ns", "bot")["spec"] == {"v": 12}  # type: ignore[index]


def test_our_delete_and_hostile_events() -> None:
    cache = ObjectCache("agent-operator")
    listed(cache, "Service", body("a", 1, OURS))
    cache.deleted("Service", "ns", "a")
    assert cache.get("Service", "ns", "a") is None
    for junk in (None, "text", {"metadata": None}, {"metadata": {"name": 3}}, {}):
        cache.observe("Service", "ns", "ADDED", junk)
    assert len(cache) == 0
    # a resourceVersion that is no number: the latest event wins
    cache.observe("Service", "ns", "ADDED", body("b", 1, OURS))
    weird = body("b", 0, OURS)
    weird["metadata"]["resourceVersion"] = "abc"
    cache.observe("Service", "ns", "MODIFIED", weird)
    assert cache.get("Service", "ns", "b")["metadata"]["resourceVersion"] == "abc"  # type: ignore[index]
