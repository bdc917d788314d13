"""Events chosen per reconcile, the work queue, owner keys and settings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent_operator.operator.config import load
from agent_operator.operator.events import Change, Event, announced, transition_events
from agent_operator.operator.handlers import owner_key
from agent_operator.operator.workqueue import ShutDown, WorkQueue


def status(phase: str, degraded: str = "False", reason: str = "AsExpected") -> dict[str, Any]:
    return {
        "phase": phase,
        "conditions": [
            {"type": "Ready", "status": "False", "message": "0 of 1 replicas available"},
            {"type": "Degraded", "status": degraded, "reason": reason, "message": "m"},
        ],
    }


def test_nothing_changed_posts_nothing() -> None:
    assert transition_events(status("Progressing"), status("Progressing"), []) == []
    degraded = status("Degraded", "True", "CredentialsSecretMissing")
    assert transition_events(degraded, degraded, []) == []  # a retry announces nothing


def test_a_creation_is_announced_by_one_event() -> None:
    changes = [Change("Deployment", "bot", "created"), Change("Service", "bot", "created")]
    events = [
        Event("Normal", "KeyIssued", "issued key k-1 into Secret bot-credentials"),
        *transition_events(None, status("Progressing"), changes),
    ]
    assert len(events) == 4
    [one] = announced(events)
    assert (one.type, one.reason) == ("Normal", "Created")
    assert one.message.startswith("created Deployment bot, Service bot; issued key k-1")
    assert "phase none -> Progressing" in one.message


def test_warnings_and_other_reconciles_keep_their_events() -> None:
    warning = Event("Warning", "ChildConflict", "Service bot exists")
    created = Event("Normal", "Created", "created Deployment bot")
    phase = Event("Normal", "Progressing", "phase none -> Progressing")
    assert announced([created, warning, phase]) == [
        Event("Normal", "Created", "created Deployment bot; phase none -> Progressing"),
        warning,
    ]
    rotation = [Event("Normal", "KeyRotated", "a"), Event("Normal", "Updated", "b")]
    assert announced(rotation) == rotation  # no creation: one Event each
    assert announced([created]) == [created]
    assert announced([]) == []


def test_transitions_post_events() -> None:
    events = transition_events(
        None, status("Progressing"), [Change("Deployment", "bot", "created")]
    )
    assert [(e.type, e.reason) for e in events] == [
        ("Normal", "Created"),
        ("Normal", "Progressing"),
    ]
    degraded = status("Degraded", "True", "CredentialsSecretMissing")
    [warning] = transition_events(status("Progressing"), degraded, [])
    assert (warning.type, warning.reason) == ("Warning", "CredentialsSecretMissing")
    other = status("Degraded", "True", "InvalidSpec")
    assert [e.reason for e in transition_events(degraded, other, [])] == ["InvalidSpec"]
    assert [e.reason for e in transition_events(degraded, status("Progressing"), [])] == [
        "Progressing"
    ]


def with_keys(base: dict[str, Any], keys: str, reason: str) -> dict[str, Any]:
    conditions = [
        *base["conditions"],
        {"type": "CredentialsReady", "status": keys, "reason": reason, "message": "issuer down"},
    ]
    return {**base, "conditions": conditions}


def test_a_failing_key_step_is_announced_once() -> None:
    fine = with_keys(status("Ready"), "True", "KeysInPlace")
    failing = with_keys(status("Ready"), "False", "IssuerUnavailable")
    [warning] = transition_events(fine, failing, [])
    assert (warning.type, warning.reason, warning.message) == (
        "Warning",
        "IssuerUnavailable",
        "issuer down",
    )
    assert transition_events(failing, failing, []) == []  # retries announce nothing
    assert transition_events(fine, with_keys(status("Ready"), "False", "NoKeys"), []) == []


def test_owner_key_from_controller_reference_or_label() -> None:
    child = {
        "metadata": {
            "namespace": "ns",
            "ownerReferences": [
                {"apiVersion": "agents.dev/v1alpha1", "kind": "AgentDeployment", "name": "bot"}
            ],
        }
    }
    assert owner_key(child) == ("ns", "bot")
    labelled = {"metadata": {"namespace": "ns", "labels": {"agents.dev/agent": "b2"}}}
    assert owner_key(labelled) == ("ns", "b2")
    assert owner_key({"metadata": {"namespace": "ns"}}) is None


async def test_queue_deduplicates_and_requeues_keys_added_while_processing() -> None:
    queue: WorkQueue[str] = WorkQueue()
    await queue.add("a")
    await queue.add("a")
    assert len(queue) == 1
    key = await queue.get()
    await queue.add("a")  # while held: not handed to a second worker
    assert len(queue) == 0
    await queue.done(key)
    assert len(queue) == 1 and await queue.get() == "a"


def test_queue_backoff_doubles_and_ignores_bursts_until_forgotten() -> None:
    now = [100.0]
    queue: WorkQueue[str] = WorkQueue(base=1.0, cap=5.0, clock=lambda: now[0])
    delays = []
    for _ in range(5):  # each retry comes when the previous delay has passed
        delays.append(queue.backoff("a"))
        now[0] += delays[-1]
    assert delays == [1.0, 1.0, 2.0, 4.0, 5.0]  # retries at +1, +2, +4, +8, then capped
    queue.forget("a")
    # a burst of failures (events) at one instant does not push the retry out
    assert [queue.backoff("a") for _ in range(10)] == [1.0] * 10


async def test_queue_add_after_keeps_the_earliest_deadline() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.05)
    queue.add_after("a", 100)
    assert await asyncio.wait_for(queue.get(), 2) == "a"
    await queue.done("a")
    queue.add_after("b", 100)
    queue.add_after("b", 0.05)  # an earlier deadline replaces a later one
    assert await asyncio.wait_for(queue.get(), 2) == "b"
    await queue.done("b")
    await queue.shutdown()
    with pytest.raises(ShutDown):
        await queue.get()


def test_settings_from_flags_over_environment() -> None:
    env = {
        "AGENT_OPERATOR_NAMESPACES": "a,b",
        "AGENT_OPERATOR_WORKERS": "2",
        "AGENT_OPERATOR_PEERING": "agents",
    }
    config = load([], env)
    assert config.namespaces == ("a", "b") and config.workers == 2
    assert config.peering == "agents" and not config.clusterwide
    config = load(["-n", "c", "--workers", "8", "--gateway-image", "gw:2"], env)
    assert config.namespaces == ("c",) and config.workers == 8
    assert config.build.gateway_image == "gw:2"
    assert load(["--all-namespaces"], env).clusterwide
    assert load(["--standalone"], {}).standalone
