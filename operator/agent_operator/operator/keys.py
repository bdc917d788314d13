"""Keeping the key Secrets: runs the rotation plan (operator/rotation.py) with I/O.

One `keep` per key Secret per reconcile: it reads the live Secret, asks the
plan for the next step, performs it (writing the Secret before and after
any external call), and repeats until nothing is due. Trouble at the issuer
never takes a working key away: it becomes `CredentialsReady=False` and a
retry with backoff, while `Ready` stays as it was.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from agent_operator.api import AgentDeployment, Rotation, duration_seconds
from agent_operator.builders.labels import credentials_name
from agent_operator.operator import metrics
from agent_operator.operator.events import Event
from agent_operator.operator.issuers import GeneratedIssuer, Issuer, StaticIssuer, upstream_issuer
from agent_operator.operator.openai_admin import IssuerRefused, IssuerUnavailable
from agent_operator.operator.problems import Problem
from agent_operator.operator.rotation import (
    ROTATE_ANNOTATION,
    KeyState,
    Plan,
    Policy,
    decide,
    next_rotation,
    pending,
    promoted,
    read_state,
    recorded,
    render,
    resolved,
    revoked,
    rfc3339,
    rotated,
    trigger_token,
)

# Held on an AgentDeployment while keys minted at an external issuer exist.
FINALIZER: Final = "agents.dev/revoke-keys"
# An admin sets it to "true" to let a deletion go without revoking (issuer gone for good).
SKIP_REVOCATION: Final = "agents.dev/skip-revocation"
# How long a new client key is staged before callers are given it: the kubelet
# delivers a changed Secret to the pods within about a minute plus its cache TTL.
STAGE_SECONDS: Final = 120.0
# Testing only: SIGKILL the operator when it reaches this step of a rotation.
CRASH_AT: Final = os.environ.get("AGENT_OPERATOR_CRASH_AT", "")
_MAX_STEPS: Final = 4  # revoke, then mint, then nothing: a bound against a loop

Write = Callable[[dict[str, Any]], dict[str, Any]]  # applies a Secret body at once


def crash_point(step: str) -> None:
    """Die like `kill -9` at `step` when AGENT_OPERATOR_CRASH_AT names it (tests)."""
    if step == CRASH_AT:
        os.kill(os.getpid(), signal.SIGKILL)


def key_name_prefix(agd: AgentDeployment, secret: str) -> str:
    """Names of the keys minted for one Secret of one AgentDeployment (by uid: a
    namesake created later never mistakes these for its own)."""
    return f"agent-operator-{agd.metadata.uid}-{'up' if secret.endswith('-credentials') else 'cl'}-"


@dataclass
class KeyOutcome:
    """One key Secret after `keep`."""

    desired: dict[str, Any] | None  # the Secret to apply; None: leave the live one alone
    status: dict[str, str] | None = None  # keyID, rotatedAt, nextRotationAt, previousExpiresAt
    events: list[Event] = field(default_factory=list)
    problem: Problem | None = None  # no working key: Ready=False
    trouble: Problem | None = None  # a working key, but a step failed: CredentialsReady=False
    due: datetime | None = None  # when the next step falls due
    external: bool = False  # keys live at an external issuer (the finalizer is needed)
    state: KeyState = field(default_factory=KeyState)  # as last written


class KeyKeeper:
    """Runs rotations; `time_scale` > 1 makes every rotation duration pass faster (tests)."""

    def __init__(
        self,
        kube_get: Callable[[str, str, str], dict[str, Any] | None],
        clock: Callable[[], datetime],
        time_scale: float = 1.0,
    ) -> None:
        self.get = kube_get
        self.clock = clock
        self.time_scale = time_scale

    def policy(self, rotation: Rotation, follows_source: bool, staged: bool) -> Policy:
        scale = self.time_scale
        return Policy(
            every=timedelta(seconds=duration_seconds(rotation.every) / scale),
            grace=timedelta(seconds=duration_seconds(rotation.grace_period) / scale),
            follows_source=follows_source,
            stage=timedelta(seconds=STAGE_SECONDS / scale) if staged else None,
        )

    def issuer(self, agd: AgentDeployment, secret: str) -> Issuer:
        """The issuer of one key Secret (the source or admin Secret read here)."""
        if secret != credentials_name(agd):
            return GeneratedIssuer()
        spec = agd.spec.credentials.issuer
        source = None
        if spec.secret_ref is not None:
            source = self.get("Secret", agd.namespace, spec.secret_ref.name)
        return upstream_issuer(spec, source)

    def keep(
        self,
        agd: AgentDeployment,
        child: dict[str, Any],
        live: Mapping[str, Any] | None,
        write: Write,
        ensure_finalizer: Callable[[], None],
    ) -> KeyOutcome:
        """Bring one key Secret up to date; `write` applies a Secret body at once."""
        name = child["metadata"]["name"]
        upstream = name == credentials_name(agd)
        rotation = agd.spec.credentials.rotation if upstream else agd.spec.client_auth.rotation
        trigger = trigger_token(agd.metadata.annotations.get(ROTATE_ANNOTATION))
        follows_source = upstream and agd.spec.credentials.issuer.type == "static"
        # callers read the client keys' `current`: a new one is staged first
        policy = self.policy(rotation, follows_source, staged=not upstream)
        outcome = KeyOutcome(None, state=read_state(live))

        def commit(state: KeyState) -> KeyState:
            # written at once, and remembered even if a later call of this step fails:
            # a pending mark must survive the failure of the mint it guards
            write(render(child, state))
            outcome.state = state
            return state

        try:
            issuer = self.issuer(agd, name)
            outcome.external = issuer.external
            source = issuer.value() if isinstance(issuer, StaticIssuer) else None
            for _ in range(_MAX_STEPS):
                plan = decide(outcome.state, policy, self.clock(), trigger, source)
                if plan.action == "none":
                    outcome.due = plan.due
                    break
                self._step(
                    agd,
                    child,
                    outcome.state,
                    plan,
                    issuer,
                    policy,
                    trigger,
                    commit,
                    ensure_finalizer,
                    outcome,
                )
        except (Problem, IssuerUnavailable, IssuerRefused) as err:
            found = err if isinstance(err, Problem) else _issuer_problem(err)
            if outcome.state.current is None:
                outcome.problem = found
            else:
                outcome.trouble = found
        state = outcome.state
        if state.current is not None:
            outcome.desired = render(child, state)
            outcome.status = key_status(state, policy)
            age = (self.clock() - state.issued_at).total_seconds() if state.issued_at else 0.0
            metrics.CREDENTIAL_AGE.labels(agd.namespace, agd.name, _which(upstream)).set(age)
            due = next_rotation(state, policy)
            metrics.set_next_rotation(
                agd.namespace, agd.name, _which(upstream), due.timestamp() if due else None
            )
        return outcome

    def _step(
        self,
        agd: AgentDeployment,
        child: dict[str, Any],
        state: KeyState,
        plan: Plan,
        issuer: Issuer,
        policy: Policy,
        trigger: str | None,
        commit: Callable[[KeyState], KeyState],
        ensure_finalizer: Callable[[], None],
        outcome: KeyOutcome,
    ) -> None:
        secret = child["metadata"]["name"]
        if plan.action == "resolve":
            # a mint whose answer was lost: what it (or any earlier lost mint) made is
            # found by its name and revoked; only the keys the Secret holds stay
            keep = {state.key_id, state.previous_key_id}
            for key_id, _ in issuer.list(key_name_prefix(agd, secret)):
                if key_id not in keep:
                    issuer.revoke(key_id)
                    metrics.REVOCATIONS.labels(result="ok").inc()
            commit(resolved(state))
            return
        if plan.action == "promote":
            was = state.key_id
            state = commit(promoted(state, self.clock(), policy.grace))
            assert state.previous_expires_at is not None
            outcome.events.append(
                Event(
                    "Normal",
                    "KeyRotated",
                    f"rotated Secret {secret}: key {was} -> {state.key_id} (staged first); the "
                    f"previous key stays valid until {rfc3339(state.previous_expires_at)}",
                )
            )
            return
        if plan.action == "record":
            commit(recorded(state, trigger))
            return
        if plan.action == "revoke":
            if state.previous_key_id is not None:
                crash_point("before-revoke")
                try:
                    issuer.revoke(state.previous_key_id)
                except (IssuerUnavailable, IssuerRefused):
                    metrics.REVOCATIONS.labels(result="error").inc()
                    raise
                metrics.REVOCATIONS.labels(result="ok").inc()
                crash_point("after-revoke")
            gone = state.previous_key_id
            commit(revoked(state))
            verb = "revoked" if issuer.external else "dropped"
            outcome.events.append(
                Event(
                    "Normal",
                    "KeyRevoked",
                    f"{verb} the previous key {gone} of Secret {secret} (grace period ended)",
                )
            )
            return
        # mint
        name = key_name_prefix(agd, secret) + secrets.token_hex(4)
        if issuer.external:
            ensure_finalizer()  # before anything exists that deletion must revoke
            crash_point("before-pending-write")
            state = commit(pending(state, name))
            crash_point("after-pending-write")
        try:
            key = issuer.issue(name)
        except (IssuerUnavailable, IssuerRefused):
            metrics.ROTATIONS.labels(result="error").inc()
            raise
        crash_point("after-mint")
        was = state.key_id
        state = commit(rotated(state, key, self.clock(), policy.grace, trigger, policy.stage))
        crash_point("after-write")
        metrics.ROTATIONS.labels(result="ok").inc()
        if state.next is not None:
            outcome.events.append(
                Event(
                    "Normal",
                    "KeyStaged",
                    f"staged key {key.key_id} in Secret {secret} ({plan.reason}); it becomes "
                    f"current once it has reached the pods",
                )
            )
        elif was is None:
            outcome.events.append(
                Event("Normal", "KeyIssued", f"issued key {key.key_id} into Secret {secret}")
            )
        else:
            assert state.previous_expires_at is not None
            outcome.events.append(
                Event(
                    "Normal",
                    "KeyRotated",
                    f"rotated Secret {secret} ({plan.reason}): key {was} -> {key.key_id}; the "
                    f"previous key stays valid until {rfc3339(state.previous_expires_at)}",
                )
            )

    def revoke_all(self, agd: AgentDeployment, secret: str) -> int:
        """Revoke every key minted for `secret` at its issuer (deletion); returns how many."""
        issuer = self.issuer(agd, secret)
        if not issuer.external:
            return 0
        count = 0
        for key_id, _ in issuer.list(key_name_prefix(agd, secret)):
            try:
                issuer.revoke(key_id)
            except (IssuerUnavailable, IssuerRefused):
                metrics.REVOCATIONS.labels(result="error").inc()
                raise
            metrics.REVOCATIONS.labels(result="ok").inc()
            count += 1
        return count


def key_status(state: KeyState, policy: Policy) -> dict[str, str]:
    """status.credentials / status.clientKeys of a Secret's state."""
    out: dict[str, str] = {}
    if state.key_id:
        out["keyID"] = state.key_id
    if state.issued_at:
        out["rotatedAt"] = rfc3339(state.issued_at)
    if (due := next_rotation(state, policy)) is not None:
        out["nextRotationAt"] = rfc3339(due)
    if state.previous_expires_at is not None and state.has_previous:
        out["previousExpiresAt"] = rfc3339(state.previous_expires_at)
    return out


def _which(upstream: bool) -> str:
    return "credentials" if upstream else "client-keys"


def _issuer_problem(err: Exception) -> Problem:
    # str() of the issuer's errors is a safe one-line reason (no key material)
    if isinstance(err, IssuerRefused):
        return Problem("IssuerRefused", f"the key issuer refused: {err}")
    return Problem("IssuerUnavailable", f"the key issuer is unavailable: {err}")
