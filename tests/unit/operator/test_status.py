"""Status derived from child bodies, and condition transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agent_operator.operator.problems import Problem
from agent_operator.operator.status import derive_status, rollout, status_patch, transition

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def deployment(
    replicas: int = 2,
    generation: int = 1,
    observed: int = 1,
    updated: int = 2,
    available: int = 2,
    ready: int = 2,
    total: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": total or updated,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "readyReplicas": ready,
            "conditions": conditions or [],
        },
    }


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_ready_when_rollout_complete() -> None:
    status = derive_status(3, None, deployment(), None, T0)
    assert status["phase"] == "Ready"
    assert status["observedGeneration"] == 3
    assert status["replicas"] == 2 and status["readyReplicas"] == 2
    c = conditions(status)
    assert c["Ready"]["status"] == "True"
    assert c["Progressing"]["status"] == "False" and c["Progressing"]["reason"] == "RolloutComplete"
    assert c["Degraded"]["status"] == "False"
    assert all(
        x["observedGeneration"] == 3 and x["lastTransitionTime"] == "2026-01-01T00:00:00Z"
        for x in c.values()
    )


def test_progressing_without_ready_pods() -> None:
    status = derive_status(1, None, deployment(available=0, ready=0), None, T0)
    assert status["phase"] == "Progressing"
    c = conditions(status)
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "RolloutInProgress"
    assert c["Progressing"]["status"] == "True"
    assert "0 of 2" in c["Progressing"]["message"]


def test_progressing_while_controller_has_not_observed_the_generation() -> None:
    state = rollout(deployment(generation=4, observed=3))
    assert not state.complete and "observe" in state.message


def test_old_replicas_pending_termination_is_not_complete() -> None:
    assert not rollout(deployment(updated=2, total=3)).complete


def test_pending_without_deployment() -> None:
    status = derive_status(1, None, None, None, T0)
    assert status["phase"] == "Pending"
    assert status["replicas"] == 0


def test_problem_is_degraded_with_reason_and_message() -> None:
    problem = Problem("CredentialsSecretMissing", "Secret 'x' (key 'apiKey') does not exist")
    status = derive_status(1, None, deployment(), problem, T0)
    assert status["phase"] == "Degraded"
    c = conditions(status)
    assert c["Ready"]["status"] == "False"
    assert c["Ready"]["reason"] == c["Degraded"]["reason"] == "CredentialsSecretMissing"
    assert c["Degraded"]["status"] == "True" and "'x'" in c["Degraded"]["message"]


def test_progress_deadline_exceeded_is_degraded() -> None:
    stalled = deployment(
        available=0,
        ready=0,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    )
    status = derive_status(1, None, stalled, None, T0)
    assert status["phase"] == "Degraded"
    assert conditions(status)["Degraded"]["reason"] == "ProgressDeadlineExceeded"
    assert conditions(status)["Progressing"]["status"] == "False"


def test_transition_time_kept_while_status_unchanged() -> None:
    first = derive_status(1, None, deployment(available=0, ready=0), None, T0)
    # same status, other message and generation: no transition
    second = derive_status(2, first, deployment(available=1, ready=1), None, T1)
    c1, c2 = conditions(first), conditions(second)
    assert c2["Ready"]["lastTransitionTime"] == c1["Ready"]["lastTransitionTime"]
    assert c2["Ready"]["message"] != c1["Ready"]["message"]
    assert c2["Ready"]["observedGeneration"] == 2
    # a real transition moves it
    third = derive_status(2, second, deployment(), None, T1)
    assert conditions(third)["Ready"]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert conditions(third)["Degraded"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_transition_from_unknown_previous() -> None:
    out = transition(
        [{"type": "Ready", "status": "True"}], [{"type": "Ready", "status": "True"}], T1
    )
    assert out[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"  # no time to keep


def test_key_status_is_passed_through_and_credentials_ready_follows_trouble() -> None:
    status = derive_status(
        1,
        None,
        deployment(),
        None,
        T0,
        credentials={"rotatedAt": "2026-01-01T00:00:00Z", "keyID": "static-ab"},
        client_keys={},
    )
    assert status["credentials"] == {"rotatedAt": "2026-01-01T00:00:00Z", "keyID": "static-ab"}
    assert "clientKeys" not in status
    ready = {c["type"]: c for c in status["conditions"]}
    assert ready["CredentialsReady"]["status"] == "True" and ready["Ready"]["status"] == "True"
    trouble = Problem("IssuerUnavailable", "the key issuer is unavailable: 503")
    status = derive_status(
        1, None, deployment(), None, T0, credentials={"keyID": "static-ab"}, trouble=trouble
    )
    ready = {c["type"]: c for c in status["conditions"]}
    # a failing key step with a working key in place: Ready stays True
    assert ready["CredentialsReady"]["status"] == "False"
    assert ready["CredentialsReady"]["reason"] == "IssuerUnavailable"
    assert ready["Ready"]["status"] == "True" and status["phase"] == "Ready"


def test_status_patch_is_empty_when_nothing_changed() -> None:
    status = derive_status(1, None, deployment(), None, T0)
    live = {**status, "budget": {"spentUSD": 1.0}}  # someone else's field
    assert status_patch(live, derive_status(1, live, deployment(), None, T1)) == {}
    changed = derive_status(2, live, deployment(), None, T1)
    patch = status_patch(live, changed)
    assert set(patch) == {"observedGeneration", "conditions"}
    assert "budget" not in patch


def test_status_patch_clears_key_fields_no_longer_derived() -> None:
    live = derive_status(
        1,
        None,
        deployment(),
        None,
        T0,
        client_keys={"rotatedAt": "2026-01-01T00:00:00Z", "keyID": "gen-1"},
    )
    assert live["clientKeys"]["keyID"] == "gen-1"
    new = derive_status(2, live, deployment(), None, T1, client_keys={})
    patch = status_patch(live, new, ("credentials", "clientKeys"))
    assert "clientKeys" in patch and patch["clientKeys"] is None  # merge patch: remove
    assert "credentials" not in patch  # absent on both sides: nothing to clear
    assert "clientKeys" not in status_patch(live, new)  # only fields named clearable
    assert status_patch({**new, "clientKeys": None}, new, ("credentials", "clientKeys")) == {}
