"""Status of an AgentDeployment, derived from its children: pure functions.

Conditions follow metav1.Condition: lastTransitionTime moves only when the
condition's status changes; reason and message may change in between.
Phase is a summary of the conditions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from agent_operator.operator.problems import Problem

READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"
# Keys in place and their last step (mint, revoke) done. False while a step
# fails with a working key still in place: Ready is not affected then.
CREDENTIALS_READY: Final = "CredentialsReady"
CONDITION_TYPES: Final = (READY, PROGRESSING, DEGRADED, CREDENTIALS_READY)
KEY_FIELDS: Final = ("credentials", "clientKeys")  # status fields fed by the key Secrets


def rfc3339(when: datetime) -> str:
    """UTC seconds, as Kubernetes writes times."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Rollout:
    """Where the Deployment's rollout stands."""

    complete: bool
    stalled: bool
    replicas: int
    ready: int
    message: str


def rollout(deployment: Mapping[str, Any]) -> Rollout:
    """Rollout state of a live Deployment body, like `kubectl rollout status` decides it."""
    spec_replicas = int(deployment.get("spec", {}).get("replicas", 1))
    status = deployment.get("status") or {}
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    observed = int(status.get("observedGeneration", 0))
    replicas = int(status.get("replicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    ready = int(status.get("readyReplicas", 0))
    stalled = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )
    if observed < generation:
        message = "waiting for the Deployment controller to observe the new generation"
    elif updated < spec_replicas:
        message = f"{updated} of {spec_replicas} replicas updated"
    elif replicas > updated:
        message = f"{replicas - updated} old replicas pending termination"
    elif available < spec_replicas:
        message = f"{available} of {spec_replicas} replicas available"
    elif spec_replicas > 0 and ready == 0:
        message = "no ready replicas"
    else:
        return Rollout(True, False, replicas, ready, f"{ready} of {spec_replicas} replicas ready")
    return Rollout(False, stalled, replicas, ready, message)


def condition(
    type_: str, status: bool | None, reason: str, message: str, generation: int
) -> dict[str, Any]:
    """A condition without its transition time (see `transition`)."""
    text = "Unknown" if status is None else ("True" if status else "False")
    return {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def transition(
    previous: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """`new` conditions with lastTransitionTime kept from `previous` unless status changed."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in new:
        old = before.get(cond["type"])
        same = old is not None and old.get("status") == cond["status"]
        if same and old is not None and old.get("lastTransitionTime"):
            when = old["lastTransitionTime"]
        else:
            when = rfc3339(now)
        out.append({**cond, "lastTransitionTime": when})
    return out


def _credentials_condition(
    problem: Problem | None, trouble: Problem | None, have_keys: bool, generation: int
) -> dict[str, Any]:
    """CredentialsReady: keys in place and their last step done."""
    if trouble is not None:
        return condition(CREDENTIALS_READY, False, trouble.reason, trouble.message, generation)
    if problem is not None and problem.reason.startswith(("Credentials", "Issuer")):
        return condition(CREDENTIALS_READY, False, problem.reason, problem.message, generation)
    if not have_keys:
        return condition(CREDENTIALS_READY, False, "NoKeys", "no key issued yet", generation)
    return condition(
        CREDENTIALS_READY, True, "KeysInPlace", "keys issued and up to date", generation
    )


def _conditions(
    generation: int, deployment: Mapping[str, Any] | None, problem: Problem | None
) -> tuple[str, list[dict[str, Any]]]:
    state = rollout(deployment) if deployment is not None else None
    if state is None:
        progressing = condition(
            PROGRESSING, False, "NoDeployment", "the Deployment does not exist yet", generation
        )
    elif state.complete:
        progressing = condition(PROGRESSING, False, "RolloutComplete", state.message, generation)
    elif state.stalled:
        progressing = condition(
            PROGRESSING, False, "ProgressDeadlineExceeded", state.message, generation
        )
    else:
        progressing = condition(PROGRESSING, True, "RolloutInProgress", state.message, generation)

    if problem is not None:
        phase, reason, message = "Degraded", problem.reason, problem.message
    elif state is not None and state.stalled:
        phase, reason = "Degraded", "ProgressDeadlineExceeded"
        message = f"the Deployment exceeded its progress deadline: {state.message}"
    elif state is None:
        phase, reason, message = "Pending", "Pending", "children are being created"
    elif not state.complete:
        phase, reason, message = "Progressing", "RolloutInProgress", state.message
    else:
        phase, reason, message = "Ready", "Ready", state.message

    degraded = phase == "Degraded"
    conditions = [
        condition(READY, phase == "Ready", reason, message, generation),
        progressing,
        condition(
            DEGRADED,
            degraded,
            reason if degraded else "AsExpected",
            message if degraded else "no problem found",
            generation,
        ),
    ]
    return phase, conditions


def derive_status(
    generation: int,
    previous: Mapping[str, Any] | None,
    deployment: Mapping[str, Any] | None,
    problem: Problem | None,
    now: datetime,
    credentials: Mapping[str, str] | None = None,
    client_keys: Mapping[str, str] | None = None,
    trouble: Problem | None = None,
) -> dict[str, Any]:
    """The status fields this operator owns.

    `deployment` is the live Deployment body (None when absent); `credentials`
    and `client_keys` are the status of the key Secrets (keyID, rotatedAt,
    nextRotationAt, previousExpiresAt); `trouble` a failed key step that left
    a working key in place (CredentialsReady=False, Ready unaffected).
    """
    previous = previous or {}
    phase, conditions = _conditions(generation, deployment, problem)
    conditions.append(_credentials_condition(problem, trouble, bool(credentials), generation))
    deployment_status = (deployment or {}).get("status") or {}
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase,
        "conditions": transition(previous.get("conditions") or [], conditions, now),
        "replicas": int(deployment_status.get("replicas", 0)),
        "readyReplicas": int(deployment_status.get("readyReplicas", 0)),
    }
    for field, keys in zip(KEY_FIELDS, (credentials, client_keys), strict=True):
        if keys:
            status[field] = dict(keys)
    return status


def status_patch(
    live: Mapping[str, Any] | None, new: Mapping[str, Any], clearable: Sequence[str] = ()
) -> dict[str, Any]:
    """The fields of `new` that differ from `live` (empty: no write needed).

    A field named in `clearable` that `new` lacks but `live` has is set to None,
    which a merge patch removes (`clientKeys` once clientAuth is switched off).
    """
    live = live or {}
    patch: dict[str, Any] = {
        key: None for key in clearable if key not in new and live.get(key) is not None
    }
    for key, value in new.items():
        have = live.get(key)
        if isinstance(value, Mapping) and isinstance(have, Mapping):
            if any(have.get(k) != v for k, v in value.items()):
                patch[key] = value
        elif have != value:
            patch[key] = value
    return patch
