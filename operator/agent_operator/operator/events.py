"""Kubernetes Events on meaningful transitions: pure selection of what to post.

Events are derived from what changed in one reconcile (a child written, the
phase or the Degraded reason moved), so a reconcile that changes nothing
posts nothing, and a retried problem is announced once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from agent_operator.api import API_VERSION, KIND
from agent_operator.operator.status import BUDGET_EXHAUSTED, CREDENTIALS_READY, DEGRADED


@dataclass(frozen=True)
class Event:
    """A core/v1 Event about the AgentDeployment (never with key material)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Change:
    """A write to one child."""

    kind: str
    name: str
    action: Literal["created", "updated", "deleted"]
    why: str = ""


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def transition_events(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], changes: Sequence[Change]
) -> list[Event]:
    """Events for one reconcile: child writes, phase, problem and credential transitions.

    Key steps (issued, rotated, revoked) post their own Events (operator/keys.py).
    """
    old = old or {}
    events = []
    for change in changes:
        reason = change.action.capitalize()
        detail = f" ({change.why})" if change.why else ""
        text = f"{change.action} {change.kind} {change.name}{detail}"
        events.append(Event("Normal", reason, text))
    was_keys, keys_now = _condition(old, CREDENTIALS_READY), _condition(new, CREDENTIALS_READY)
    failing = keys_now.get("status") == "False" and keys_now.get("reason") != "NoKeys"
    # a failing key step is announced once, unless it is also the Degraded reason below
    if (
        failing
        and keys_now.get("reason") != _condition(new, DEGRADED).get("reason")
        and (was_keys.get("status") != "False" or was_keys.get("reason") != keys_now.get("reason"))
    ):
        events.append(
            Event("Warning", str(keys_now.get("reason")), str(keys_now.get("message", "")))
        )
    was, now = _condition(old, DEGRADED), _condition(new, DEGRADED)
    degraded_now = now.get("status") == "True"
    if degraded_now and (was.get("status") != "True" or was.get("reason") != now.get("reason")):
        events.append(Event("Warning", str(now.get("reason")), str(now.get("message", ""))))
    elif (
        old.get("phase") != new.get("phase")
        and not degraded_now
        # announced by the budget's own Warning (operator/budget.py)
        and new.get("phase") != BUDGET_EXHAUSTED
    ):
        phase = str(new.get("phase"))
        ready = _condition(new, "Ready").get("message", "")
        events.append(
            Event("Normal", phase, f"phase {old.get('phase') or 'none'} -> {phase}: {ready}")
        )
    return events


def announced(events: Sequence[Event]) -> list[Event]:
    """What to post of one reconcile's Events: a creation is announced once.

    When the reconcile created children, its Normal Events (each child, the
    first key, the phase) become one "Created" Event: Events are writes, and
    a thousand new AgentDeployments must not cost the API server ten thousand
    of them. Warnings, and the Events of any other reconcile, stay as they are.
    """
    normal = [e for e in events if e.type == "Normal"]
    if len(normal) < 2 or not any(e.reason == "Created" for e in normal):
        return list(events)
    created = [e.message.removeprefix("created ") for e in normal if e.reason == "Created"]
    rest = [e.message for e in normal if e.reason != "Created"]
    message = "; ".join(["created " + ", ".join(created), *rest])
    return [Event("Normal", "Created", message), *(e for e in events if e.type != "Normal")]


MAX_MESSAGE: Final = 1024  # characters of an Event's message


def event_body(
    involved: Mapping[str, Any],
    event: Event,
    timestamp: str,
    component: str,
    instance: str,
) -> dict[str, Any]:
    """The core/v1 Event about the object whose `metadata` is `involved` (an AgentDeployment).

    `timestamp` is RFC 3339; `component` and `instance` name the reporter.
    """
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": involved["name"],
            "namespace": involved["namespace"],
            "uid": involved["uid"],
            "resourceVersion": involved.get("resourceVersion"),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:MAX_MESSAGE],
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }
