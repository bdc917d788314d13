"""kopf wiring: settings, watches that only enqueue, and the workers that reconcile.

No create/update/resume/daemon/timer handlers: those make kopf write to the
object (last-handled annotations, finalizers), i.e. writes while idle and
deletion blocked while the operator is down. `on.event` handlers make kopf
write nothing as long as they return None (a returned value would be stored
in status). Every event only enqueues the owner's key; the reconcile reads
the world afresh, so a missed or merged event loses nothing.

SpendRecords (the spend ledger) are not children: their events feed the
ledger's index and schedule a budget-only update of their agent (coalesced,
one GET and a status patch), never a full reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from agent_operator import ledger
from agent_operator.api import GROUP, ISSUER_SOURCE_LABEL, KIND, PLURAL, VERSION
from agent_operator.builders.labels import AGENT_LABEL, MANAGED_BY
from agent_operator.operator import metrics
from agent_operator.operator.cache import ObjectCache
from agent_operator.operator.config import Config
from agent_operator.operator.health import HealthServer, resource_name
from agent_operator.operator.kube import KINDS
from agent_operator.operator.peering import PeeringMonitor
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
    ("", "v1", "secrets"),
)
# Children are watched without a server-side label selector: the object index
# (operator/cache.py) must also hold others' objects, so a name already taken is
# seen without a GET; the handlers filter ours (and the issuer sources) in memory.
_KIND_OF_PLURAL: Final = {k.plural: k.kind for k in KINDS.values()}
# What the index holds: resource as kubectl names it -> kind.
CACHED: Final = {
    resource_name(GROUP, PLURAL): KIND,
    **{resource_name(g, plural): _KIND_OF_PLURAL[plural] for g, _, plural in CHILD_RESOURCES},
}
# Everything kopf watches for us (what /readyz waits for), as kubectl names it.
WATCHED: Final = (
    resource_name(GROUP, PLURAL),
    resource_name(GROUP, ledger.RECORD_PLURAL),
    *(resource_name(group, plural) for group, _, plural in CHILD_RESOURCES),
)
# A due key step is looked at no later than this after it falls due.
_DUE_SLACK_SECONDS: Final = 0.5
# Failures that are the API server's, not ours: logged without a traceback.
TRANSIENT: Final = (ApiException, urllib3.exceptions.HTTPError, OSError)
# Budget-only updates of one agent start at least this far apart (seconds):
# gateways write their records every few seconds each, often together.
BUDGET_GAP_SECONDS: Final = 0.5
_BUDGET_RETRY_MAX_SECONDS: Final = 300.0


def describe(err: BaseException) -> str:
    """One line about an API failure. An ApiException's str() starts with "(409)" alone;
    its reason says more. Never its body: it may quote what we sent."""
    if isinstance(err, ApiException):
        what = f"{err.status} {err.reason}"
    else:
        what = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {what}"


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

    def __init__(
        self, config: Config, reconciler: Reconciler, gate: PeeringMonitor, cache: ObjectCache
    ) -> None:
        self.config = config
        self.reconciler = reconciler
        self.gate = gate
        self.cache = cache  # what the watches have seen, and our own writes
        # Keys met while a peer acts: reconciled as soon as we act (kopf's re-list on
        # resume may come before our gate opens, and timers are ours alone).
        self.parked: set[Key] = set()
        gate.listeners.append(self._peering_changed)
        self.queue: WorkQueue[Key] = WorkQueue(
            config.backoff_base_seconds, config.backoff_max_seconds
        )
        self.children: dict[Key, list[str]] = {}
        # (namespace, Secret) -> the AgentDeployments whose issuer reads it
        self.sources: dict[Key, set[Key]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        # One reconcile or budget-only update of a key at a time: both write its status.
        self.locks: dict[Key, asyncio.Lock] = {}
        self.budget_timers: dict[Key, asyncio.TimerHandle] = {}
        self.budget_started: dict[Key, float] = {}  # loop time of the last update's start
        self.budget_failures: dict[Key, int] = {}
        self.budget_tasks: set[asyncio.Task[None]] = set()
        self.budget_running: dict[Key, asyncio.Task[None]] = {}
        # loop time each key's periodic resync falls due: that reconcile reads afresh
        self.resync_at: dict[Key, float] = {}
        self.stopping = False

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.worker(), name=f"reconcile-worker-{i}")
            for i in range(self.config.workers)
        ]
        self.tasks.append(asyncio.create_task(self.gate.run(), name="peering-monitor"))

    def _peering_changed(self, active: bool) -> None:
        if active and not self.stopping:
            for key in self.parked:
                self.queue.add_nowait(key)
            self.parked.clear()

    async def stop(self) -> None:
        self.stopping = True
        await self.queue.shutdown()
        for timer in self.budget_timers.values():
            timer.cancel()
        tasks = [*self.tasks, *self.budget_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def lock(self, key: Key) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    def poke_budget(self, key: Key, delay: float = 0.0) -> None:
        """A budget-only update of `key` in `delay` seconds, coalesced: a pending earlier
        one covers it, and updates of one key start BUDGET_GAP_SECONDS apart at least."""
        if self.stopping or self.reconciler.ledger is None:
            return
        loop = asyncio.get_running_loop()
        last = self.budget_started.get(key, -math.inf)
        when = max(loop.time() + max(delay, 0.0), last + BUDGET_GAP_SECONDS)
        timer = self.budget_timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self.budget_timers[key] = loop.call_at(when, self._start_budget, key)

    def _start_budget(self, key: Key) -> None:
        self.budget_timers.pop(key, None)
        task = asyncio.create_task(self.refresh_budget(key), name=f"budget-{key[0]}/{key[1]}")
        self.budget_tasks.add(task)
        self.budget_running[key] = task

        def done(task: asyncio.Task[None]) -> None:
            self.budget_tasks.discard(task)
            if self.budget_running.get(key) is task:
                del self.budget_running[key]

        task.add_done_callback(done)

    async def refresh_budget(self, key: Key) -> None:
        """Run the budget-only update of `key`; schedule the next one it asks for."""
        logger = object_logger(*key)
        async with self.lock(key):
            self.budget_started[key] = asyncio.get_running_loop().time()
            try:
                if not self.gate.active:
                    self.parked.add(key)  # a peer acts; ours is a full reconcile later
                    return
                due = await asyncio.to_thread(self.reconciler.refresh_budget, *key)
            except Exception as err:
                failures = self.budget_failures[key] = self.budget_failures.get(key, 0) + 1
                delay = min(2.0**failures, _BUDGET_RETRY_MAX_SECONDS)
                trace = not isinstance(err, TRANSIENT)  # a bug: keep the trace in the log
                logger.error(
                    "budget update failed, retrying in %.0fs: %s",
                    delay,
                    describe(err),
                    exc_info=trace,
                )
                self.poke_budget(key, delay)
                return
        self.budget_failures.pop(key, None)
        if due is not None:
            self.poke_budget(key, due + _DUE_SLACK_SECONDS)

    def forget_budget(self, key: Key) -> None:
        """Drop the budget state of a gone AgentDeployment."""
        timer = self.budget_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self.budget_started.pop(key, None)
        self.budget_failures.pop(key, None)
        self.reconciler.budget_writes.pop(key, None)
        lock = self.locks.get(key)
        if lock is not None and not lock.locked():
            del self.locks[key]
        if self.reconciler.ledger is not None:
            self.reconciler.ledger.forget(*key)
        else:
            metrics.forget_budget(*key)

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
            if not self.gate.active:
                logger.debug("not reconciling: another replica is active")
                self.parked.add(key)
                return
            now = asyncio.get_running_loop().time()
            resync = now >= self.resync_at.get(key, math.inf) - _DUE_SLACK_SECONDS
            async with self.lock(key):
                result = await asyncio.to_thread(self.reconciler.reconcile, *key, resync)
        except TRANSIENT as err:
            self._failed(key, logger, describe(err), trace=False)
            return
        except Exception as err:  # a bug: keep the trace in the log, never in status
            self._failed(key, logger, f"{type(err).__name__}: {err}", trace=True)
            return
        finally:
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started)
        metrics.RECONCILES.labels(result=result.outcome).inc()
        logger.debug("reconciled: %s", result.outcome)
        self._index_source(key, result.source)
        if result.budget_in is not None:  # a period ends, a fold pass falls due
            self.poke_budget(key, result.budget_in + _DUE_SLACK_SECONDS)
        if result.outcome == "gone":
            self.queue.forget(key)
            self.children.pop(key, None)
            self.resync_at.pop(key, None)
            metrics.forget_credentials(*key)
            self.forget_budget(key)
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
            self.resync_at[key] = asyncio.get_running_loop().time() + delay
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


def register(
    registry: kopf.OperatorRegistry, runtime: Runtime, health: HealthServer | None = None
) -> None:
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
        # kopf keeps a task per object for this long after its last event; ours only
        # enqueue, so a short life costs nothing and a thousand objects' children
        # (ten thousand events in a minute) do not hold thousands of idle tasks.
        settings.queueing.idle_timeout = 0.5
        # Reconciles run in threads (the Kubernetes client blocks): as many as workers.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="reconcile")
        )
        # Peering: our priority (a tie-break lowers it later) and a short lifetime, so that
        # a kill -9 fails over in seconds (kopf resumes a standby when the dead peer's
        # record expires: https://github.com/nolar/kopf/pull/581). Keep-alives come every
        # lifetime - 5..10 s (at least 1 s); not logged one by one.
        runtime.gate.bind(settings)
        settings.peering.stealth = True
        if config.peering:
            settings.peering.name = config.peering
            settings.peering.mandatory = True
        settings.peering.standalone = config.standalone
        runtime.start()
        if health is not None:
            await health.start()

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await runtime.stop()
        if health is not None:
            await health.stop()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def agent_deployment_event(
        namespace: str | None, name: str | None, body: kopf.Body, **_: Any
    ) -> None:
        if namespace and name:
            key = (namespace, name)
            running = runtime.budget_running.get(key)
            if running is not None:
                # its status write's event can come before the write's own answer
                await asyncio.wait({running})
            version = body.get("metadata", {}).get("resourceVersion")
            if version and version in runtime.reconciler.budget_writes.get(key, ()):
                return  # our own budget-only status write: nothing a reconcile needs
            if runtime.cache.is_echo(KIND, body):
                return  # our own write (status, finalizer): the reconcile that made it knows
            await runtime.queue.add((namespace, name))

    # The spend ledger: index the record, update its agent's budget (not a reconcile).
    @kopf.on.event(GROUP, VERSION, ledger.RECORD_PLURAL, id="spend-records", registry=registry)
    async def spend_record_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        spend = runtime.reconciler.ledger
        key = spend.observe(type, body) if spend is not None else None
        if key is not None:
            runtime.poke_budget(key)

    async def child_event(body: kopf.Body, resource: kopf.Resource, **_: Any) -> None:
        if runtime.cache.is_echo(_KIND_OF_PLURAL[resource.plural], body):
            return  # our own write: the reconcile that made it knows
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
