"""The life of a key Secret, as pure functions: what it holds, what to do next.

A key Secret (X-credentials, X-client-keys) holds `current`, and after a
rotation `previous` with `previous-expires-at` (the gateway accepts or uses
both until then). Its annotations record the lifecycle, and every step is
written there before the external call it guards, so that an operator
killed at any point resumes without minting twice and without orphans:

    (no key) --mint--> current
    current --[pending written]--> mint at the issuer --> current' + previous
    previous --grace ends--> revoke at the issuer --> current' alone

Client keys take one more step: a new client key is first staged in `next`
(gateways accept it, callers are not given it), and becomes `current` only
once the kubelet has had time to deliver it to every pod; callers who read
`current` then never present a key a pod does not know yet.

A mint whose answer was lost (crash, timeout) leaves `pending-key-name`
behind; the next reconcile lists the issuer by that name, revokes what it
finds, clears the mark and mints again. A rotation asked for while the
previous key is still in its grace period waits for the grace to end: the
previous key is then revoked first, so at most two keys are ever valid.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from agent_operator.operator.credentials import IssuedKey, decode
from agent_operator.sidecar import CURRENT, NEXT, PREVIOUS, PREVIOUS_EXPIRES_AT

# annotations of a key Secret (never key material)
KEY_ID: Final = "agents.dev/key-id"
ISSUED_AT: Final = "agents.dev/issued-at"
PREVIOUS_KEY_ID: Final = "agents.dev/previous-key-id"
ROTATION_STATE: Final = "agents.dev/rotation-state"  # "pending" while a mint is in flight
PENDING_KEY_NAME: Final = "agents.dev/pending-key-name"  # the name the mint was given
HANDLED_TRIGGER: Final = "agents.dev/rotate-handled"  # last agents.dev/rotate value acted on
NEXT_KEY_ID: Final = "agents.dev/next-key-id"  # a staged client key
NEXT_AT: Final = "agents.dev/next-at"  # when the staged key becomes current
# on the AgentDeployment: any new value rotates all its keys once
ROTATE_ANNOTATION: Final = "agents.dev/rotate"
LIFECYCLE_ANNOTATIONS: Final = (
    KEY_ID,
    ISSUED_AT,
    PREVIOUS_KEY_ID,
    ROTATION_STATE,
    PENDING_KEY_NAME,
    HANDLED_TRIGGER,
    NEXT_KEY_ID,
    NEXT_AT,
)

Action = Literal["none", "resolve", "mint", "promote", "revoke", "record"]


def trigger_token(value: str | None) -> str | None:
    """What is recorded of an agents.dev/rotate value: itself when short, else its
    SHA-256 (an absurdly long value must not make the Secret too large to write)."""
    if value is None or len(value) <= 63:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def rfc3339(when: datetime) -> str:
    """UTC seconds, as Kubernetes writes times."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_up(when: datetime) -> str:
    """`when` rounded up to the second: an expiry written early would cut a grace short."""
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return rfc3339(when)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class KeyState:
    """What a key Secret holds (the keys themselves stay in memory only)."""

    current: str | None = None
    key_id: str | None = None
    issued_at: datetime | None = None
    previous: str | None = None
    previous_key_id: str | None = None
    previous_expires_at: datetime | None = None
    pending_name: str | None = None
    handled_trigger: str | None = None
    next: str | None = None
    next_key_id: str | None = None
    next_at: datetime | None = None

    def __repr__(self) -> str:  # never print key material by accident
        return (
            f"KeyState(key_id={self.key_id!r}, previous_key_id={self.previous_key_id!r}, "
            f"pending_name={self.pending_name!r})"
        )

    @property
    def has_previous(self) -> bool:
        return self.previous is not None or self.previous_key_id is not None


def read_state(secret: Mapping[str, Any] | None) -> KeyState:
    """The KeyState of a live key Secret (empty when there is none)."""
    if not secret:
        return KeyState()
    notes = secret.get("metadata", {}).get("annotations") or {}
    pending = notes.get(PENDING_KEY_NAME) if notes.get(ROTATION_STATE) == "pending" else None
    return KeyState(
        current=decode(secret, CURRENT) or None,
        key_id=notes.get(KEY_ID),
        issued_at=parse_time(notes.get(ISSUED_AT)),
        previous=decode(secret, PREVIOUS) or None,
        previous_key_id=notes.get(PREVIOUS_KEY_ID),
        previous_expires_at=parse_time(decode(secret, PREVIOUS_EXPIRES_AT)),
        pending_name=pending,
        handled_trigger=notes.get(HANDLED_TRIGGER),
        next=decode(secret, NEXT) or None,
        next_key_id=notes.get(NEXT_KEY_ID),
        next_at=parse_time(notes.get(NEXT_AT)),
    )


def render(child: Mapping[str, Any], state: KeyState) -> dict[str, Any]:
    """The builder's metadata-only Secret `child` holding `state` (what we apply)."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    data: dict[str, str] = {}
    if state.current is not None:
        data[CURRENT] = b64(state.current)
    if state.previous is not None:
        data[PREVIOUS] = b64(state.previous)
        if state.previous_expires_at is not None:
            data[PREVIOUS_EXPIRES_AT] = b64(rfc3339_up(state.previous_expires_at))
    if state.next is not None:
        data[NEXT] = b64(state.next)
    notes: dict[str, str] = {}
    for name, value in (
        (KEY_ID, state.key_id),
        (ISSUED_AT, rfc3339(state.issued_at) if state.issued_at else None),
        (PREVIOUS_KEY_ID, state.previous_key_id),
        (HANDLED_TRIGGER, state.handled_trigger),
        (NEXT_KEY_ID, state.next_key_id if state.next is not None else None),
        (NEXT_AT, rfc3339_up(state.next_at) if state.next is not None and state.next_at else None),
    ):
        if value is not None:
            notes[name] = value
    if state.pending_name is not None:
        notes[ROTATION_STATE] = "pending"
        notes[PENDING_KEY_NAME] = state.pending_name
    metadata = dict(child.get("metadata", {}))
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **notes}
    return {**child, "metadata": metadata, "data": data}


@dataclass(frozen=True)
class Policy:
    """How one key Secret rotates (durations already time-scaled)."""

    every: timedelta
    grace: timedelta
    # keys copied from a source: they change when the source does, not on a schedule
    follows_source: bool = False
    # client keys: a new key is staged this long (in `next`, accepted by the
    # gateways) before it becomes `current`, the key callers are given
    stage: timedelta | None = None


@dataclass(frozen=True)
class Plan:
    """The next step for one key Secret and when to look again."""

    action: Action
    reason: str = ""
    due: datetime | None = None  # when a later step falls due (requeue then)


def next_rotation(state: KeyState, policy: Policy) -> datetime | None:
    """When the next scheduled rotation falls due (None: no schedule)."""
    if policy.follows_source or state.issued_at is None:
        return None
    return state.issued_at + policy.every


def decide(
    state: KeyState,
    policy: Policy,
    now: datetime,
    trigger: str | None = None,
    source_value: str | None = None,
) -> Plan:
    """The next step: resolve a lost mint, mint, revoke the previous key, or nothing.

    `trigger` is the AgentDeployment's agents.dev/rotate value; `source_value`
    the static source's key (for keys that follow a source).
    """
    if state.pending_name is not None:
        return Plan("resolve", "a mint was interrupted")
    if state.current is None:
        return Plan("mint", "initial")
    if state.next is not None:
        if state.next_at is None or now >= state.next_at:
            return Plan("promote", "the staged key reached the pods")
        return Plan("none", "a staged key waits to reach the pods", state.next_at)
    wanted: str | None = None
    if policy.follows_source and source_value is not None and source_value != state.current:
        wanted = "source changed"
    elif trigger and trigger != state.handled_trigger:
        wanted = "requested"
    elif (due := next_rotation(state, policy)) is not None and now >= due:
        wanted = "scheduled"
    if state.has_previous:
        expires = state.previous_expires_at
        if expires is None or now >= expires:
            return Plan("revoke", "grace period ended")
        # at most two valid keys: a new rotation waits for the previous key's end
        return Plan(
            "none", f"{wanted} rotation waits for the grace period" if wanted else "", expires
        )
    if wanted == "requested" and policy.follows_source:
        return Plan("record", "the source still holds the same key")
    if wanted is not None:
        return Plan("mint", wanted)
    return Plan("none", "", next_rotation(state, policy))


def pending(state: KeyState, name: str) -> KeyState:
    """`state` with a mint named `name` marked in flight (written before the call)."""
    return replace(state, pending_name=name)


def resolved(state: KeyState) -> KeyState:
    """`state` once an interrupted mint was revoked at the issuer."""
    return replace(state, pending_name=None)


def rotated(
    state: KeyState,
    key: IssuedKey,
    now: datetime,
    grace: timedelta,
    trigger: str | None,
    stage: timedelta | None = None,
) -> KeyState:
    """`state` after `key` was minted: staged for `stage` when given (and a key is
    in use), else current at once with the old current valid for `grace`."""
    old = state.current is not None
    if old and stage is not None:
        return replace(
            state,
            next=key.secret,
            next_key_id=key.key_id,
            next_at=now + stage,
            pending_name=None,
            handled_trigger=trigger,
        )
    return KeyState(
        current=key.secret,
        key_id=key.key_id,
        issued_at=now,
        previous=state.current if old else None,
        previous_key_id=state.key_id if old else None,
        previous_expires_at=now + grace if old else None,
        pending_name=None,
        handled_trigger=trigger,
    )


def promoted(state: KeyState, now: datetime, grace: timedelta) -> KeyState:
    """`state` once its staged key has reached the pods: it becomes current, the old
    current stays valid for `grace`."""
    assert state.next is not None
    return replace(
        state,
        current=state.next,
        key_id=state.next_key_id,
        issued_at=now,
        previous=state.current,
        previous_key_id=state.key_id,
        previous_expires_at=now + grace,
        next=None,
        next_key_id=None,
        next_at=None,
    )


def recorded(state: KeyState, trigger: str | None) -> KeyState:
    """`state` with `trigger` acted on without a new key."""
    return replace(state, handled_trigger=trigger)


def revoked(state: KeyState) -> KeyState:
    """`state` once the previous key was revoked: the current key alone."""
    return replace(state, previous=None, previous_key_id=None, previous_expires_at=None)
