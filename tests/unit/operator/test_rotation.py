"""The key lifecycle as pure functions (operator/rotation.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent_operator.operator.credentials import IssuedKey
from agent_operator.operator.rotation import (
    HANDLED_TRIGGER,
    KEY_ID,
    PENDING_KEY_NAME,
    PREVIOUS_KEY_ID,
    ROTATION_STATE,
    KeyState,
    Policy,
    decide,
    pending,
    promoted,
    read_state,
    recorded,
    render,
    resolved,
    revoked,
    rotated,
    trigger_token,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLICY = Policy(every=timedelta(hours=10), grace=timedelta(hours=1))
CHILD = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "bot-credentials", "labels": {"a": "b"}},
    "type": "Opaque",
}


def key(n: int) -> IssuedKey:
    return IssuedKey(f"id-{n}", f"sk-{n}")


def first(trigger: str | None = None) -> KeyState:
    return rotated(KeyState(), key(1), NOW, POLICY.grace, trigger)


def test_a_secret_without_a_key_gets_one_with_no_previous() -> None:
    assert decide(KeyState(), POLICY, NOW).action == "mint"
    state = first()
    assert (state.current, state.key_id, state.issued_at) == ("sk-1", "id-1", NOW)
    assert not state.has_previous


def test_nothing_is_due_before_the_schedule_and_the_plan_says_when() -> None:
    plan = decide(first(), POLICY, NOW + timedelta(hours=9))
    assert plan.action == "none" and plan.due == NOW + timedelta(hours=10)
    assert decide(first(), POLICY, NOW + timedelta(hours=10)).action == "mint"


def test_a_rotation_keeps_the_old_key_for_the_grace_period_then_revokes_it() -> None:
    later = NOW + timedelta(hours=10)
    state = rotated(first(), key(2), later, POLICY.grace, None)
    assert (state.current, state.previous, state.previous_key_id) == ("sk-2", "sk-1", "id-1")
    assert state.previous_expires_at == later + POLICY.grace
    plan = decide(state, POLICY, later + timedelta(minutes=59))
    assert plan.action == "none" and plan.due == later + POLICY.grace
    assert decide(state, POLICY, later + POLICY.grace).action == "revoke"
    assert not revoked(state).has_previous and revoked(state).current == "sk-2"


def test_a_new_trigger_value_rotates_exactly_once() -> None:
    state = first(trigger="a")
    assert decide(state, POLICY, NOW, trigger="a").action == "none"
    plan = decide(state, POLICY, NOW, trigger="b")
    assert (plan.action, plan.reason) == ("mint", "requested")
    state = rotated(state, key(2), NOW, POLICY.grace, "b")
    # handled: once the grace period ends the previous key goes, and nothing more
    after = revoked(state)
    assert decide(after, POLICY, NOW + timedelta(hours=2), trigger="b").action == "none"


def test_a_rotation_asked_for_during_the_grace_period_waits_for_its_end() -> None:
    state = rotated(first(), key(2), NOW, POLICY.grace, None)
    plan = decide(state, POLICY, NOW + timedelta(minutes=5), trigger="now")
    assert plan.action == "none" and plan.due == NOW + POLICY.grace
    assert "waits" in plan.reason
    assert decide(state, POLICY, NOW + POLICY.grace, trigger="now").action == "revoke"
    assert decide(revoked(state), POLICY, NOW + POLICY.grace, trigger="now").action == "mint"


def test_keys_that_follow_a_source_rotate_when_it_changes_not_on_a_schedule() -> None:
    policy = Policy(POLICY.every, POLICY.grace, follows_source=True)
    state = first()
    far = NOW + timedelta(days=30)
    assert decide(state, policy, far, source_value="sk-1").action == "none"
    plan = decide(state, policy, NOW, source_value="sk-new")
    assert (plan.action, plan.reason) == ("mint", "source changed")
    # asked to rotate with the same source: the request is recorded, no key made
    plan = decide(state, policy, NOW, trigger="x", source_value="sk-1")
    assert plan.action == "record"
    assert decide(recorded(state, "x"), policy, NOW, "x", "sk-1").action == "none"


def test_an_interrupted_mint_is_resolved_before_anything_else() -> None:
    state = pending(first(), "agent-operator-uid-up-abcd")
    assert decide(state, POLICY, NOW, trigger="new").action == "resolve"
    assert resolved(state).pending_name is None


def test_state_survives_a_round_trip_through_the_secret() -> None:
    state = pending(rotated(first("t"), key(2), NOW, POLICY.grace, "t"), "name-1")
    body = render(CHILD, state)
    notes = body["metadata"]["annotations"]
    assert notes[KEY_ID] == "id-2" and notes[PREVIOUS_KEY_ID] == "id-1"
    assert notes[ROTATION_STATE] == "pending" and notes[PENDING_KEY_NAME] == "name-1"
    assert notes[HANDLED_TRIGGER] == "t" and body["metadata"]["labels"] == {"a": "b"}
    assert set(body["data"]) == {"current", "previous", "previous-expires-at"}
    back = read_state(body)
    assert back == state
    assert "sk-" not in repr(back)  # key material never in a repr
    assert "data" not in CHILD  # the builder's dict is not mutated


def test_a_revoked_previous_key_leaves_no_trace_in_the_secret() -> None:
    state = revoked(rotated(first(), key(2), NOW, POLICY.grace, None))
    body = render(CHILD, state)
    assert set(body["data"]) == {"current"}
    assert PREVIOUS_KEY_ID not in body["metadata"]["annotations"]


def test_a_new_client_key_is_staged_before_callers_are_given_it() -> None:
    stage = timedelta(minutes=2)
    staged_policy = Policy(POLICY.every, POLICY.grace, stage=stage)
    later = NOW + POLICY.every
    assert decide(first(), staged_policy, later).action == "mint"
    state = rotated(first(), key(2), later, POLICY.grace, None, stage)
    # staged: current unchanged (callers keep it), the new key in `next`
    assert (state.current, state.next, state.next_key_id) == ("sk-1", "sk-2", "id-2")
    assert not state.has_previous
    plan = decide(state, staged_policy, later + timedelta(minutes=1), trigger="again")
    assert plan.action == "none" and plan.due == later + stage
    assert decide(state, staged_policy, later + stage).action == "promote"
    done = promoted(state, later + stage, POLICY.grace)
    assert (done.current, done.previous, done.next) == ("sk-2", "sk-1", None)
    assert done.previous_expires_at == later + stage + POLICY.grace
    assert read_state(render(CHILD, state)) == state  # staging survives a restart
    # the first key is never staged: there is nothing to stage it against
    assert rotated(KeyState(), key(1), NOW, POLICY.grace, None, stage).current == "sk-1"


def test_expiries_are_written_rounded_up_to_the_second() -> None:
    late = NOW + timedelta(microseconds=1)
    body = render(CHILD, rotated(first(), key(2), late, POLICY.grace, None))
    import base64

    written = base64.b64decode(body["data"]["previous-expires-at"]).decode()
    assert written == "2026-01-01T13:00:01Z"  # not 13:00:00, a grace cut short


def test_a_rotate_value_is_recorded_bounded() -> None:
    assert trigger_token(None) is None and trigger_token("1732900000") == "1732900000"
    long = trigger_token("x" * 100_000)
    assert long is not None and long.startswith("sha256:") and len(long) == 71
    assert long == trigger_token("x" * 100_000) != trigger_token("x" * 100_001)
