"""kopf wiring: settings, watches that only enqueue, and the workers that reconcile.

No create/update/resume/daemon/timer handlers: those make kopf write to the
object (last-handled annotations, finalizers), i.e. writes while idle and
deletion blocked while the operator is down. `on.event` handlers make kopf
write nothing as long as they return None (a returned value would be stored
in status). Every event only enqueues the owner's key; the reconcile reads
the world afresh, so a missed or merged event loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from agent_operator.api import GROUP, ISSUER_SOURCE_LABEL, KIND, PLURAL, VERSION
from agent_operator.builders.labels import AGENT_LABEL, MANAGED_BY
from agent_operator.operator import metrics
from agent_operator.operator.config import Config
from agent_operator.operator.peering import PeeringGate
from agent_operator.operator.reconcile import Reconciler, object_logger
from agent_operator.operator.workqueue import ShutDown, WorkQueue

log = logging.getLogger("agent_operator.operator")

Key = tuple[str, str]  # (namespace, name) of an AgentDeployment
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
CHILD_RESOURCES: Final = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("", "v1", "configmaps"),
    ("", "v1", "serviceaccounts"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("", "v1", "secrets"),  # last: see SERVER_FILTERED
)
# Secrets are watched without a server-side label selector: one watch serves our
# children and the issuer sources (other labels), each handler filtering its own.
SERVER_FILTERED: Final = CHILD_RESOURCES[:-1]
# A due key step is looked at no later than this after it falls due.
_DUE_SLACK_SECONDS: Final = 0.5
# Failures that are the API server's, not ours: logged without a traceback.
TRANSIENT: Final = (ApiException, urllib3.exceptions.HTTPError, OSError)


def owner_key(body: Mapping[str, Any]) -> Key | None:
    """The AgentDeployment a child belongs to: its controller reference, else its label."""
    meta = body.get("metadata", {})
    namespace = meta.get("namespace")
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/"):
            return (namespace, ref["name"])
    name = (meta.get("labels") or {}).get(AGENT_LABEL)
    return (namespace, name) if namespace and name else None


class Runtime:
    """The work queue and its workers; one per operator process."""

    def __init__(self, config: Config, reconciler: Reconciler, gate: PeeringGate) -> None:
        self.config = config
        self.reconciler = reconciler
        self.gate = gate
        self.queue: WorkQueue[Key] = WorkQueue(
            config.backoff_base_seconds, config.backoff_max_seconds
        )
        self.children: dict[Key, list[str]] = {}
        # (namespace, Secret) -> the AgentDeployments whose issuer reads it
        self.sources: dict[Key, set[Key]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.worker(), name=f"reconcile-worker-{i}")
            for i in range(self.config.workers)
        ]

    async def stop(self) -> None:
        await self.queue.shutdown()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            metrics.QUEUE_DEPTH.set(len(self.queue))
            try:
                await self.process(key)
            finally:
                await self.queue.done(key)

    async def process(self, key: Key) -> None:
        logger = object_logger(*key)
        started = time.monotonic()
        try:
            if not await asyncio.to_thread(self.gate.allows, key[0]):
                # Paused in favour of a peer; kopf re-lists (and so re-queues) on resume.
                logger.debug("not reconciling: another replica is active")
                self.queue.add_after(key, self.config.resync_seconds)
                return
            result = await asyncio.to_thread(self.reconciler.reconcile, *key)
        except TRANSIENT as err:
            # An ApiException's str() starts with "(409)" alone; its reason says more.
            # Never its body: it may quote what we sent.
            what = (
                f"{err.status} {err.reason}"
                if isinstance(err, ApiException)
                else str(err).splitlines()[0]
                if str(err)
                else ""
            )
            self._failed(key, logger, f"{type(err).__name__}: {what}", trace=False)
            return
        except Exception as err:  # a bug: keep the trace in the log, never in status
            self._failed(key, logger, f"{type(err).__name__}: {err}", trace=True)
            return
        finally:
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started)
        metrics.RECONCILES.labels(result=result.outcome).inc()
        self._index_source(key, result.source)
        if result.outcome == "gone":
            self.queue.forget(key)
            self.children.pop(key, None)
            metrics.forget_credentials(*key)
        elif result.problem is not None and result.problem.retry:
            delay = self.queue.backoff(key)
            if result.due_in is not None:
                delay = min(delay, max(result.due_in, 0.0) + _DUE_SLACK_SECONDS)
            logger.info("retrying in %.0fs: %s", delay, result.problem.reason)
            self.queue.add_after(key, delay)
            self.children[key] = result.children
        else:
            self.queue.forget(key)
            # Periodic resync: kopf resumes watches from the last resourceVersion and
            # never re-lists on its own, so drift that sends no event needs a timer.
            delay = self.config.resync_seconds
            if result.due_in is not None:  # a rotation or a grace period's end
                delay = min(delay, max(result.due_in, 0.0) + _DUE_SLACK_SECONDS)
            self.queue.add_after(key, delay)
            self.children[key] = result.children
        metrics.set_managed(self.children.values())

    def _index_source(self, key: Key, source: str | None) -> None:
        for owners in self.sources.values():
            owners.discard(key)
        if source is not None:
            self.sources.setdefault((key[0], source), set()).add(key)

    def _failed(
        self, key: Key, logger: logging.LoggerAdapter[logging.Logger], what: str, trace: bool
    ) -> None:
        metrics.RECONCILES.labels(result="error").inc()
        metrics.RECONCILE_ERRORS.inc()
        delay = self.queue.backoff(key)
        logger.error("reconcile failed, retrying in %.0fs: %s", delay, what, exc_info=trace)
        self.queue.add_after(key, delay)


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """Register every kopf handler of the operator on `registry`."""
    config = runtime.config

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Our prefix for anything kopf stores; with on.event only it stores nothing.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.persistence.finalizer = f"{GROUP}/finalizer"  # unused: no finalizer yet
        # We post our own Events on transitions; kopf's per-log-line Events would be noise.
        settings.posting.enabled = False
        # Watches can go silently dead without server-side timeouts:
        # https://github.com/nolar/kopf/issues/585 and https://github.com/nolar/kopf/issues/1120
        settings.watching.server_timeout = config.watch_timeout_seconds
        settings.watching.client_timeout = config.watch_timeout_seconds + 60
        settings.watching.connect_timeout = 30
        # Ride out an API server outage of ~10 minutes: with kopf's default backoffs
        # (about one minute in all) a failed watch request ends the operator process.
        settings.networking.error_backoffs = (1, 1, 2, 3, 5, 8, 13, 21, *([30] * 18))
        # Children: only ours, filtered by the API server rather than in memory.
        for group, version, plural in SERVER_FILTERED:
            settings.watching.label_selectors[(group, version, plural)] = (
                f"{MANAGED_BY_LABEL}={MANAGED_BY}"
            )
        settings.peering.priority = config.priority
        if config.peering:
            settings.peering.name = config.peering
            settings.peering.mandatory = True
        settings.peering.standalone = config.standalone
        runtime.start()

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await runtime.stop()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def agent_deployment_event(namespace: str | None, name: str | None, **_: Any) -> None:
        if namespace and name:
            await runtime.queue.add((namespace, name))

    async def child_event(body: kopf.Body, **_: Any) -> None:
        key = owner_key(body)
        if key is not None:
            await runtime.queue.add(key)

    for group, version, plural in CHILD_RESOURCES:
        kopf.on.event(
            group,
            version,
            plural,
            id=f"child-{plural}",
            registry=registry,
            labels={MANAGED_BY_LABEL: MANAGED_BY},
        )(child_event)

    # A changed issuer source (a static key, an admin key) is a rotation: seconds, not a resync.
    @kopf.on.event(
        "",
        "v1",
        "secrets",
        id="issuer-source",
        registry=registry,
        labels={ISSUER_SOURCE_LABEL: "true"},
    )
    async def source_event(namespace: str | None, name: str | None, **_: Any) -> None:
        if namespace and name:
            for key in list(runtime.sources.get((namespace, name), ())):
                await runtime.queue.add(key)
