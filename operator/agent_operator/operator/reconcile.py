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

from kubernetes.client.exceptions import ApiException

from agent_operator.api import AgentDeployment, InvalidSpec
from agent_operator.builders import BuildOptions, desired_children
from agent_operator.builders.labels import client_keys_name, credentials_name
from agent_operator.operator import metrics
from agent_operator.operator.compare import (
    HANDOFF_MANAGER,
    replicas_handoff,
    verdict,
    with_hash,
)
from agent_operator.operator.credentials import (
    GeneratedIssuer,
    credentials_issuer,
    decode,
    fill_secret,
    secret_content,
)
from agent_operator.operator.events import Change, Event, transition_events
from agent_operator.operator.kube import AGENT_DEPLOYMENT, FIELD_MANAGER, Kube, status_message
from agent_operator.operator.problems import Problem, child_conflict, child_rejected, combine
from agent_operator.operator.status import KEY_FIELDS, derive_status, rfc3339, status_patch

log = logging.getLogger("agent_operator.reconcile")

Outcome = Literal["gone", "synced", "problem"]


@dataclass
class Result:
    """What one reconcile found; `problem.retry` asks for a retry with backoff."""

    outcome: Outcome
    problem: Problem | None = None
    writes: int = 0
    children: list[str] = field(default_factory=list)


@dataclass
class Synced:
    """One child after its sync: the live body when it is ours, what was done, what failed."""

    live: dict[str, Any] | None = None
    change: Change | None = None
    new_key: bool = False
    problem: Problem | None = None


def object_logger(namespace: str, name: str) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose every line carries the AgentDeployment's namespace and name."""
    ref = {"apiVersion": AGENT_DEPLOYMENT.api_version, "kind": AGENT_DEPLOYMENT.kind,
           "namespace": namespace, "name": name}
    return logging.LoggerAdapter(log, {"k8s_ref": ref})


def controlled_by(child: Mapping[str, Any], uid: str) -> bool:
    """True when `child` names the AgentDeployment `uid` as its controller."""
    refs = child.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def _annotations(body: Mapping[str, Any] | None) -> dict[str, str]:
    return dict((body or {}).get("metadata", {}).get("annotations") or {})


class Reconciler:
    """Reconciles AgentDeployments through `kube`; `clock` returns aware UTC datetimes."""

    def __init__(self, kube: Kube, options: BuildOptions,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kube = kube
        self.options = options
        self.clock = clock
        self.instance = socket.gethostname()

    def reconcile(self, namespace: str, name: str) -> Result:
        body = self.kube.get("AgentDeployment", namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return Result("gone")  # children go by garbage collection
        logger = object_logger(namespace, name)
        generation = int(body["metadata"].get("generation", 0))
        try:
            agd = AgentDeployment.from_body(body)
        except InvalidSpec as err:
            invalid = Problem("InvalidSpec", "; ".join(err.errors), retry=False)
            deployment = self.kube.get("Deployment", namespace, name)
            if deployment is not None and not controlled_by(deployment, body["metadata"]["uid"]):
                deployment = None  # not ours: it says nothing about this AgentDeployment
            writes = self._finish(body, generation, deployment, invalid, [], [], {}, logger)
            return Result("problem", invalid, writes)

        changes: list[Change] = []
        issued: list[str] = []
        live_by_name: dict[tuple[str, str], dict[str, Any]] = {}
        problems: list[Problem] = []
        for child in desired_children(agd, self.options):
            kind, child_name = child["kind"], child["metadata"]["name"]
            synced = self._sync_child(agd, child, logger)
            if synced.live is not None:
                live_by_name[(kind, child_name)] = synced.live
            if synced.change is not None:
                changes.append(synced.change)
            if synced.new_key:
                issued.append(child_name)
            if synced.problem is not None:
                problems.append(synced.problem)
        changes += self._prune(agd, live_by_name, logger)
        problem = combine(problems)

        credentials = live_by_name.get(("Secret", credentials_name(agd)))
        client_keys = live_by_name.get(("Secret", client_keys_name(agd)))
        writes = len(changes) + self._finish(
            body, generation, live_by_name.get(("Deployment", name)), problem, changes, issued,
            {"credentials": _annotations(credentials),
             "client_keys": _annotations(client_keys) if agd.spec.client_auth.enabled else {}},
            logger,
        )
        children = [kind for kind, _ in live_by_name]
        return Result("problem" if problem else "synced", problem, writes, children)

    def _sync_child(self, agd: AgentDeployment, child: dict[str, Any],
                    logger: logging.LoggerAdapter[logging.Logger]) -> Synced:
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
        new_key = False
        if kind == "Secret":
            try:
                child, new_key = self._with_key(agd, child, live)
            except Problem as problem:
                return Synced(live, problem=problem)
        desired = with_hash(child)
        why = verdict(desired, live)
        if why is None:
            return Synced(live, new_key=new_key)
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
            return Synced(live, problem=rejected)
        metrics.WRITES.labels(verb="apply", kind=kind).inc()
        action: Literal["created", "updated"] = "created" if why == "missing" else "updated"
        logger.info("%s %s %s (%s)", action, kind, name, why)
        return Synced(applied, Change(kind, name, action, "" if why == "missing" else why),
                      new_key)

    def _with_key(self, agd: AgentDeployment, child: dict[str, Any],
                  live: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
        """The Secret `child` with its key filled in; True when the key is new."""
        if child["metadata"]["name"] == credentials_name(agd):
            spec = agd.spec.credentials.issuer
            source = None
            if spec.type == "static" and spec.secret_ref is not None:
                source = self.kube.get("Secret", agd.namespace, spec.secret_ref.name)
            key = credentials_issuer(spec, source, live).issue()
        else:
            key = GeneratedIssuer(decode(live, "current")).issue()
        content = secret_content(key, live, self.clock())
        return fill_secret(child, content), content.issued

    def _prune(self, agd: AgentDeployment, kept: Mapping[tuple[str, str], Any],
               logger: logging.LoggerAdapter[logging.Logger]) -> list[Change]:
        """Delete optional children the spec no longer asks for (HPA, client keys)."""
        changes = []
        for kind, child_name in (("HorizontalPodAutoscaler", agd.name),
                                 ("Secret", client_keys_name(agd))):
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

    def _finish(self, body: Mapping[str, Any], generation: int,
                deployment: Mapping[str, Any] | None, problem: Problem | None,
                changes: list[Change], issued: list[str], keys: Mapping[str, Mapping[str, str]],
                logger: logging.LoggerAdapter[logging.Logger]) -> int:
        """Write status when it changed and post the Events of this reconcile; returns writes."""
        meta = body["metadata"]
        previous = body.get("status") or {}
        status = derive_status(generation, previous, deployment, problem, self.clock(),
                               keys.get("credentials"), keys.get("client_keys"))
        writes = 0
        # Without `keys` (an invalid spec) the key Secrets were not read: leave their fields.
        patch = status_patch(previous, status, KEY_FIELDS if keys else ())
        if patch:
            self.kube.patch_status(meta["namespace"], meta["name"], patch)
            metrics.WRITES.labels(verb="status", kind="AgentDeployment").inc()
            writes += 1
            if patch.get("phase"):
                logger.info("phase %s", status["phase"])
        if problem is not None and "phase" in patch:
            logger.warning("%s: %s", problem.reason, problem.message)
        for event in transition_events(previous, status, changes, issued):
            writes += self._post(body, event, logger)
        return writes

    def _post(self, body: Mapping[str, Any], event: Event,
              logger: logging.LoggerAdapter[logging.Logger]) -> int:
        meta = body["metadata"]
        now = rfc3339(self.clock())
        try:
            self.kube.create_event(meta["namespace"], {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {
                    "apiVersion": AGENT_DEPLOYMENT.api_version, "kind": AGENT_DEPLOYMENT.kind,
                    "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "type": event.type,
                "reason": event.reason,
                "message": event.message[:1024],
                "source": {"component": FIELD_MANAGER},
                "reportingComponent": FIELD_MANAGER,
                "reportingInstance": self.instance,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            })
        except Exception as err:  # an Event is a courtesy: never fail the reconcile for it
            logger.warning("could not post event %s: %s", event.reason, err)
            return 0
        metrics.WRITES.labels(verb="create", kind="Event").inc()
        return 1
