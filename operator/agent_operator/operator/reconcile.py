"""One level-triggered reconcile of one AgentDeployment: desired vs live, apply, status.

Synchronous (the Kubernetes client is); workers run it in a thread. Every
write is conditional on a difference, so a converged object costs reads only.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import urllib3
from kubernetes.client.exceptions import ApiException

from agent_operator.api import AgentDeployment, InvalidSpec
from agent_operator.builders import BuildOptions, desired_children
from agent_operator.builders.labels import client_keys_name, credentials_name
from agent_operator.operator import metrics
from agent_operator.operator.budget import Evaluation
from agent_operator.operator.compare import (
    HANDOFF_MANAGER,
    replicas_handoff,
    verdict,
    with_hash,
)
from agent_operator.operator.events import (
    Change,
    Event,
    announced,
    event_body,
    transition_events,
)
from agent_operator.operator.keys import FINALIZER, SKIP_REVOCATION, KeyKeeper, KeyOutcome
from agent_operator.operator.kube import (
    AGENT_DEPLOYMENT,
    FIELD_MANAGER,
    CachedKube,
    Kube,
    status_message,
)
from agent_operator.operator.openai_admin import IssuerRefused, IssuerUnavailable
from agent_operator.operator.problems import Problem, child_conflict, child_rejected, combine
from agent_operator.operator.spendledger import SpendLedger
from agent_operator.operator.status import (
    BUDGET_FIELD,
    KEY_FIELDS,
    derive_status,
    rfc3339,
    status_patch,
    with_budget,
)

log = logging.getLogger("agent_operator.reconcile")

Outcome = Literal["gone", "synced", "problem"]


@dataclass
class Result:
    """What one reconcile found; `problem.retry` asks for a retry with backoff."""

    outcome: Outcome
    problem: Problem | None = None
    writes: int = 0
    children: list[str] = field(default_factory=list)
    # seconds until a key step falls due (a rotation, the end of a grace period)
    due_in: float | None = None
    # the Secret spec.credentials.issuer.secretRef names: a change of it reconciles again
    source: str | None = None
    # seconds until the budget-only update is due (a period ends, a fold pass is due)
    budget_in: float | None = None


@dataclass
class Synced:
    """One child after its sync: the live body when it is ours, what was done, what failed."""

    live: dict[str, Any] | None = None
    change: Change | None = None
    problem: Problem | None = None
    keys: KeyOutcome | None = None  # key Secrets: what their lifecycle did and found


def object_logger(namespace: str, name: str) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose every line carries the AgentDeployment's namespace and name."""
    ref = {
        "apiVersion": AGENT_DEPLOYMENT.api_version,
        "kind": AGENT_DEPLOYMENT.kind,
        "namespace": namespace,
        "name": name,
    }
    return logging.LoggerAdapter(log, {"k8s_ref": ref})


def controlled_by(child: Mapping[str, Any], uid: str) -> bool:
    """True when `child` names the AgentDeployment `uid` as its controller."""
    refs = child.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


_OWN_WRITES = 4  # budget-only status writes remembered per AgentDeployment
_LEDGER_RETRY_SECONDS = 10.0  # a ledger that could not be read: the budget-only update retries


def _earliest(*delays: float | None) -> float | None:
    known = [d for d in delays if d is not None]
    return min(known) if known else None


class Reconciler:
    """Reconciles AgentDeployments through `kube`; `clock` returns aware UTC datetimes.

    `ledger` is the spend ledger's view (operator/spendledger.py) that both the
    full reconcile and the budget-only update read; None: status.budget is left
    as it is.
    """

    def __init__(
        self,
        kube: Kube,
        options: BuildOptions,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        time_scale: float = 1.0,
        ledger: SpendLedger | None = None,
    ) -> None:
        self.kube = kube
        self.options = options
        self.clock = clock
        self.instance = socket.gethostname()
        self.keys = KeyKeeper(kube.get, clock, time_scale)
        self.ledger = ledger
        # (namespace, name) -> resourceVersions of the last budget-only status writes:
        # their watch events carry nothing a reconcile needs (handlers.py skips them)
        self.budget_writes: dict[tuple[str, str], tuple[str, ...]] = {}

    def reconcile(self, namespace: str, name: str, fresh: bool = False) -> Result:
        """fresh: read everything from the API server, not the watches' index (the
        periodic resync, which catches drift a silently dead watch did not report)."""
        if fresh and isinstance(self.kube, CachedKube):
            with self.kube.fresh_reads():
                return self._reconcile(namespace, name)
        return self._reconcile(namespace, name)

    def _reconcile(self, namespace: str, name: str) -> Result:
        body = self.kube.get("AgentDeployment", namespace, name)
        if body is None:
            return Result("gone")
        logger = object_logger(namespace, name)
        if body.get("metadata", {}).get("deletionTimestamp"):
            return self._release(body, logger)  # children go by garbage collection
        generation = int(body["metadata"].get("generation", 0))
        try:
            agd = AgentDeployment.from_body(body)
        except InvalidSpec as err:
            invalid = Problem("InvalidSpec", "; ".join(err.errors), retry=False)
            deployment = self.kube.get("Deployment", namespace, name)
            if deployment is not None and not controlled_by(deployment, body["metadata"]["uid"]):
                deployment = None  # not ours: it says nothing about this AgentDeployment
            writes = self._finish(body, generation, deployment, invalid, [], [], None, logger)
            return Result("problem", invalid, writes)

        changes: list[Change] = []
        key_events: list[Event] = []
        key_status: dict[str, dict[str, str]] = {}
        live_by_name: dict[tuple[str, str], dict[str, Any]] = {}
        problems: list[Problem] = []
        troubles: list[Problem] = []
        due: list[datetime] = []
        for child in desired_children(agd, self.options):
            kind, child_name = child["kind"], child["metadata"]["name"]
            synced = self._sync_child(agd, body, child, logger)
            if synced.live is not None:
                live_by_name[(kind, child_name)] = synced.live
            if synced.change is not None:
                changes.append(synced.change)
            if synced.problem is not None:
                problems.append(synced.problem)
            if synced.keys is not None:
                field_name = "credentials" if child_name == credentials_name(agd) else "clientKeys"
                if synced.keys.status:
                    key_status[field_name] = synced.keys.status
                key_events += synced.keys.events
                if synced.keys.trouble is not None:
                    troubles.append(synced.keys.trouble)
                if synced.keys.due is not None:
                    due.append(synced.keys.due)
        changes += self._prune(agd, live_by_name, logger)
        problem = combine(problems)
        trouble = combine(troubles)
        evaluation, budget_in = self._budget(agd, body, logger)

        writes = len(changes) + self._finish(
            body,
            generation,
            live_by_name.get(("Deployment", name)),
            problem,
            changes,
            key_events,
            key_status,
            logger,
            trouble,
            evaluation,
        )
        children = [kind for kind, _ in live_by_name]
        due_in = (min(due) - self.clock()).total_seconds() if due else None
        ref = agd.spec.credentials.issuer.secret_ref
        source = ref.name if ref is not None else None
        if problem is None and trouble is not None:
            # a key step failed while a working key stays in place: synced, but retried
            # with backoff (the issuer's troubles all ask for a retry)
            return Result("synced", trouble, writes, children, due_in, source, budget_in)
        outcome: Outcome = "problem" if problem else "synced"
        return Result(outcome, problem, writes, children, due_in, source, budget_in)

    def _budget(
        self,
        agd: AgentDeployment,
        body: Mapping[str, Any],
        logger: logging.LoggerAdapter[logging.Logger],
    ) -> tuple[Evaluation | None, float | None]:
        """The budget now and when to look again; (None, retry) when the ledger cannot be
        read: status.budget stays as it was and the children are reconciled all the same."""
        if self.ledger is None:
            return None, None
        try:
            evaluation = self.ledger.evaluate(agd, (body.get("status") or {}).get(BUDGET_FIELD))
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as err:
            what = f"{err.status} {err.reason}" if isinstance(err, ApiException) else ""
            logger.warning(
                "spend ledger not read (%s %s): status.budget left as it was",
                type(err).__name__,
                what,
            )
            return None, _LEDGER_RETRY_SECONDS
        due = self.ledger.fold_due_in(agd.namespace, agd.name)
        return evaluation, _earliest(evaluation.resets_in, due)

    def refresh_budget(self, namespace: str, name: str) -> float | None:
        """The budget-only update, for a change of the ledger: one GET of the AgentDeployment,
        then status.budget, phase and BudgetAvailable patched when they changed, the
        threshold Events, and a fold pass when one is due.

        Returns seconds until it is due again (a period ends, a fold pass);
        None when nothing is scheduled.
        """
        if self.ledger is None:
            return None
        body = self.kube.get("AgentDeployment", namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        previous = body.get("status") or {}
        try:
            agd = AgentDeployment.from_body(body)
        except InvalidSpec:
            return None  # the full reconcile reports it
        if not previous.get("conditions"):
            return None  # not reconciled yet: its first reconcile writes all of status
        logger = object_logger(namespace, name)
        evaluation = self.ledger.evaluate(agd, previous.get(BUDGET_FIELD))
        generation = int(body["metadata"].get("generation", 0))
        status = with_budget(
            previous, evaluation.status, generation, self.clock(), evaluation.store
        )
        patch = status_patch(previous, status, (BUDGET_FIELD,))
        if patch:
            written = self.kube.patch_status(namespace, name, patch)
            version = ((written or {}).get("metadata") or {}).get("resourceVersion")
            if version:
                recent = self.budget_writes.get((namespace, name), ())[-(_OWN_WRITES - 1) :]
                self.budget_writes[(namespace, name)] = (*recent, str(version))
            metrics.WRITES.labels(verb="status", kind="AgentDeployment").inc()
            if "phase" in patch:
                logger.info("phase %s", status["phase"])
        for event in [*evaluation.events, *transition_events(previous, status, [])]:
            self._post(body, event, logger)
        self.ledger.remember(namespace, name, evaluation)
        return _earliest(evaluation.resets_in, self.ledger.fold(agd))

    def _sync_child(
        self,
        agd: AgentDeployment,
        body: Mapping[str, Any],
        child: dict[str, Any],
        logger: logging.LoggerAdapter[logging.Logger],
    ) -> Synced:
        """Apply one child if it differs from live.

        An object of the child's name that this AgentDeployment does not control
        is never applied over, read further or used for status. When a Secret's
        key cannot be had, the live Secret is left alone (applying it without
        data would drop a working key). A child the API server refuses is a
        Problem naming it; other API errors raise.
        """
        kind, name = child["kind"], child["metadata"]["name"]
        live = self.kube.get(kind, agd.namespace, name)
        if live is not None and not controlled_by(live, agd.metadata.uid):
            return Synced(problem=child_conflict(kind, name))
        keys: KeyOutcome | None = None
        if kind == "Secret":
            written: list[dict[str, Any]] = []

            def write(secret: dict[str, Any]) -> dict[str, Any]:
                written.append(self.kube.apply(with_hash(secret)))
                metrics.WRITES.labels(verb="apply", kind=kind).inc()
                return written[-1]

            keys = self.keys.keep(
                agd, child, live, write, lambda: self._ensure_finalizer(body, logger)
            )
            live = written[-1] if written else live
            if keys.desired is None:
                # no key to hold: the live Secret (if any) is left as it is
                return Synced(live, problem=keys.problem, keys=keys)
            child = keys.desired
        desired = with_hash(child)
        why = verdict(desired, live)
        if why is None:
            return Synced(live, problem=keys.problem if keys else None, keys=keys)
        try:
            handoff = replicas_handoff(desired, live, FIELD_MANAGER)
            if handoff is not None:
                self.kube.apply(handoff, HANDOFF_MANAGER)
                metrics.WRITES.labels(verb="apply", kind=kind).inc()
            applied = self.kube.apply(desired)
        except ApiException as err:
            rejected = child_rejected(kind, name, int(err.status or 0), status_message(err))
            if rejected is None:
                raise
            return Synced(live, problem=rejected, keys=keys)
        metrics.WRITES.labels(verb="apply", kind=kind).inc()
        action: Literal["created", "updated"] = "created" if why == "missing" else "updated"
        logger.info("%s %s %s (%s)", action, kind, name, why)
        return Synced(
            applied, Change(kind, name, action, "" if why == "missing" else why), keys=keys
        )

    def _ensure_finalizer(
        self, body: Mapping[str, Any], logger: logging.LoggerAdapter[logging.Logger]
    ) -> None:
        """Hold the revocation finalizer before the first key is minted at an external issuer."""
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER in finalizers:
            return
        fresh = self.kube.get("AgentDeployment", meta["namespace"], meta["name"])
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            raise Problem("Deleting", "the AgentDeployment is being deleted: no new keys")
        finalizers = list(fresh["metadata"].get("finalizers") or [])
        if FINALIZER not in finalizers:
            self.kube.set_finalizers(
                meta["namespace"],
                meta["name"],
                [*finalizers, FINALIZER],
                fresh["metadata"]["resourceVersion"],
            )
            metrics.WRITES.labels(verb="patch", kind="AgentDeployment").inc()
            logger.info("added finalizer %s (keys minted at an external issuer)", FINALIZER)

    def _release(
        self, body: Mapping[str, Any], logger: logging.LoggerAdapter[logging.Logger]
    ) -> Result:
        """A deleting AgentDeployment: revoke its external keys, then drop the finalizer.

        The issuer unreachable: the object stays, CredentialsReady=False
        RevocationPending, retried with backoff; the annotation
        agents.dev/skip-revocation=true lets an admin release it anyway.
        """
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            return Result("gone")
        notes = meta.get("annotations") or {}
        skip = notes.get(SKIP_REVOCATION) == "true"
        if not skip:
            try:
                agd = AgentDeployment.from_body(body)
                count = self.keys.revoke_all(agd, credentials_name(agd))
            except (Problem, IssuerUnavailable, IssuerRefused, InvalidSpec) as err:
                reason = getattr(err, "reason", None) or type(err).__name__
                message = (
                    getattr(err, "message", None)
                    or "; ".join(getattr(err, "errors", []))
                    or str(err)
                )
                pending = Problem(
                    "RevocationPending",
                    f"keys minted at the issuer could not be revoked ({reason}: "
                    f"{message}); deletion waits. To delete without revoking, "
                    f"annotate {SKIP_REVOCATION}=true",
                )
                writes = self._finish(
                    body, int(meta.get("generation", 0)), None, None, [], [], {}, logger, pending
                )
                return Result("problem", pending, writes)
            logger.info("revoked %d key(s) at the issuer before deletion", count)
        else:
            logger.warning("deleted without revoking its keys (%s=true)", SKIP_REVOCATION)
        rest = [f for f in finalizers if f != FINALIZER]
        self.kube.set_finalizers(meta["namespace"], meta["name"], rest, meta["resourceVersion"])
        metrics.WRITES.labels(verb="patch", kind="AgentDeployment").inc()
        return Result("gone")

    def _prune(
        self,
        agd: AgentDeployment,
        kept: Mapping[tuple[str, str], Any],
        logger: logging.LoggerAdapter[logging.Logger],
    ) -> list[Change]:
        """Delete optional children the spec no longer asks for (HPA, client keys)."""
        changes = []
        for kind, child_name in (
            ("HorizontalPodAutoscaler", agd.name),
            ("Secret", client_keys_name(agd)),
        ):
            if (kind, child_name) in kept:
                continue
            live = self.kube.get(kind, agd.namespace, child_name)
            if live is None or not controlled_by(live, agd.metadata.uid):
                continue
            self.kube.delete(kind, agd.namespace, child_name, live["metadata"]["uid"])
            metrics.WRITES.labels(verb="delete", kind=kind).inc()
            changes.append(Change(kind, child_name, "deleted", "no longer in the spec"))
            logger.info("deleted %s %s (no longer in the spec)", kind, child_name)
        return changes

    def _finish(
        self,
        body: Mapping[str, Any],
        generation: int,
        deployment: Mapping[str, Any] | None,
        problem: Problem | None,
        changes: list[Change],
        key_events: list[Event],
        keys: Mapping[str, Mapping[str, str]] | None,
        logger: logging.LoggerAdapter[logging.Logger],
        trouble: Problem | None = None,
        evaluation: Evaluation | None = None,
    ) -> int:
        """Write status when it changed and post the Events of this reconcile; returns writes.

        `keys` maps the status fields credentials / clientKeys to their values;
        None when the key Secrets were not looked at (their fields stay).
        `evaluation` is the budget now; None keeps status.budget as it is.
        """
        meta = body["metadata"]
        previous = body.get("status") or {}
        budget = evaluation.status if evaluation is not None else previous.get(BUDGET_FIELD)
        store = evaluation.store if evaluation is not None else "kubernetes"
        held = previous if keys is None else keys
        status = derive_status(
            generation,
            previous,
            deployment,
            problem,
            self.clock(),
            held.get("credentials"),
            held.get("clientKeys"),
            trouble,
            budget,
            store,
        )
        writes = 0
        clearable = list(KEY_FIELDS) if keys is not None else []
        if evaluation is not None:
            clearable.append(BUDGET_FIELD)  # limits removed: status.budget goes
        patch = status_patch(previous, status, clearable)
        if patch:
            self.kube.patch_status(meta["namespace"], meta["name"], patch)
            metrics.WRITES.labels(verb="status", kind="AgentDeployment").inc()
            writes += 1
            if patch.get("phase"):
                logger.info("phase %s", status["phase"])
        if problem is not None and "phase" in patch:
            logger.warning("%s: %s", problem.reason, problem.message)
        budget_events = list(evaluation.events) if evaluation is not None else []
        events = [*key_events, *transition_events(previous, status, changes), *budget_events]
        for event in announced(events):
            writes += self._post(body, event, logger)
        if evaluation is not None and self.ledger is not None:
            self.ledger.remember(meta["namespace"], meta["name"], evaluation)
        return writes

    def _post(
        self, body: Mapping[str, Any], event: Event, logger: logging.LoggerAdapter[logging.Logger]
    ) -> int:
        meta = body["metadata"]
        now = rfc3339(self.clock())
        try:
            self.kube.create_event(
                meta["namespace"], event_body(meta, event, now, FIELD_MANAGER, self.instance)
            )
        except Exception as err:  # an Event is a courtesy: never fail the reconcile for it
            logger.warning("could not post event %s: %s", event.reason, err)
            return 0
        metrics.WRITES.labels(verb="create", kind="Event").inc()
        return 1
