"""The health port: /healthz (the process answers) and /readyz (it can do its job).

Ready means, besides an answer:
- when acting (alone, or as the active peer): every watch stream kopf runs for
  us (AgentDeployments, SpendRecords and the children's kinds, in every
  watched namespace) has finished its first listing and still streams;
- with peering: the peering objects are read and our own keep-alive is live
  in them, and (with --peering NAME) kopf's watch of them streams: that watch
  is what resumes a standby. A healthy standby is ready.
Otherwise 503, with the reasons in a line of text.

kopf tells neither when a listing is over nor that a watch stream died (a
watcher that fails is logged once and never restarted; its own probe
endpoint is liveness only), so `track_kopf_watches` wraps kopf's
`continuous_watch`, which yields `Bookmark.LISTED` once a listing is over.
The same wrapper feeds the reconciler's object index (`feed_cache`,
operator/cache.py): it sees each stream's events in order, listings included.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.clients import watching  # internal: see the module's docstring

from agent_operator.operator.cache import ObjectCache
from agent_operator.operator.peering import PeeringMonitor, Scope

HEALTHZ_PATH: Final = "/healthz"
READYZ_PATH: Final = "/readyz"
# A stream that ended without an error is re-listed at once (after a 410 Gone,
# a dropped connection): only a longer gap means trouble.
RECONNECT_GRACE_SECONDS: Final = 10.0
_MAX_REASONS: Final = 5

Watch = tuple[str, Scope]  # (resource as kubectl names it, namespace or None: cluster-wide)


def resource_name(group: str, plural: str) -> str:
    """`plural.group` as kubectl spells it (`deployments.apps`); core kinds by plural alone."""
    return f"{plural}.{group}" if group else plural


@dataclass
class _Stream:
    listed: bool = False  # has finished a listing once
    streaming: bool = False  # listed, and the stream goes on
    changed: float = 0.0  # monotonic time of the last change
    error: str | None = None  # how it ended, when it failed


class WatchTracker:
    """Which of kopf's watch streams have listed and still stream."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.streams: dict[Watch, _Stream] = {}

    def listed(self, watch: Watch) -> None:
        self.streams[watch] = _Stream(listed=True, streaming=True, changed=self.clock())

    def ended(self, watch: Watch, error: str | None = None) -> None:
        stream = self.streams.setdefault(watch, _Stream())
        stream.streaming, stream.changed, stream.error = False, self.clock(), error

    def problems(self, watches: Iterable[Watch]) -> list[str]:
        """What is wrong with `watches`, one phrase each; [] when all stream."""
        out = []
        for resource, namespace in watches:
            where = f"{resource} in {namespace}" if namespace else f"{resource} (all namespaces)"
            stream = self.streams.get((resource, namespace))
            if stream is None or not stream.listed:
                out.append(f"{where}: not listed yet")
            elif stream.error is not None:
                out.append(f"{where}: watch failed: {stream.error}")
            elif not stream.streaming and self.clock() - stream.changed > RECONNECT_GRACE_SECONDS:
                out.append(f"{where}: not watched")
        return out


def _describe(err: Exception) -> str:
    """One short line; a kopf API error by its status and the server's message."""
    if isinstance(err, kopf_errors.APIError):
        what = f"{err.status} {err.message or ''}".strip()
    else:
        what = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {what}"[:200]


class _KopfWatchHook:
    """Wraps kopf's `continuous_watch` once per process, reporting to the latest tracker,
    and feeding the latest object index every raw event before kopf dispatches it."""

    def __init__(self) -> None:
        self.tracker: WatchTracker | None = None
        self.cache: ObjectCache | None = None
        self.kinds: Mapping[str, str] = {}  # resource as kubectl names it -> kind
        self.original: Any = None

    def install(self) -> None:
        if self.original is None:
            self.original = watching.continuous_watch
            watching.continuous_watch = self.continuous_watch

    async def continuous_watch(
        self, *, resource: Any, namespace: str | None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        name = resource_name(resource.group, resource.plural)
        watch = (name, namespace)
        kind = self.kinds.get(name)
        cache = self.cache if kind is not None else None
        if cache is not None:
            cache.listing(str(kind), namespace)
        error = None
        try:
            async for event in self.original(resource=resource, namespace=namespace, **kwargs):
                if event is watching.Bookmark.LISTED:
                    if cache is not None:
                        cache.listed(str(kind), namespace)
                    if self.tracker is not None:
                        self.tracker.listed(watch)
                elif cache is not None and isinstance(event, dict):
                    cache.observe(str(kind), namespace, event.get("type"), event.get("object"))
                yield event
        except kopf_errors.APITooManyRequestsError:
            raise  # kopf retries these
        except Exception as err:  # kopf's watcher dies of it and is not restarted
            error = _describe(err)
            raise
        finally:
            if cache is not None:
                cache.ended(str(kind), namespace)
            if self.tracker is not None:
                self.tracker.ended(watch, error)


_HOOK: Final = _KopfWatchHook()


def track_kopf_watches(tracker: WatchTracker) -> None:
    """Report the listings and ends of every watch stream kopf starts from now on."""
    _HOOK.tracker = tracker
    _HOOK.install()


def feed_cache(cache: ObjectCache, kinds: Mapping[str, str]) -> None:
    """Feed `cache` from every watch stream kopf starts from now on of the resources
    `kinds` names (as kubectl names them, e.g. deployments.apps) -> their kind."""
    _HOOK.cache, _HOOK.kinds = cache, dict(kinds)
    _HOOK.install()


class Readiness:
    """What /readyz answers: (ready, one line of text)."""

    def __init__(
        self,
        tracker: WatchTracker,
        peering: PeeringMonitor,
        resources: Sequence[str],
        scopes: Sequence[Scope],
    ) -> None:
        self.tracker = tracker
        self.peering = peering
        self.watches = list(itertools.product(resources, scopes))
        self.peering_watches = [(peering.resource, scope) for scope in scopes]

    def check(self) -> tuple[bool, str]:
        decision = self.peering.decision
        problems = []
        if decision.problem is not None:
            problems.append(decision.problem)
        if self.peering.enabled and self.peering.mandatory:
            problems += self.tracker.problems(self.peering_watches)
        if decision.active:
            problems += self.tracker.problems(self.watches)
        if problems:
            more = len(problems) - _MAX_REASONS
            text = "; ".join(problems[:_MAX_REASONS]) + (f"; and {more} more" if more > 0 else "")
            return False, f"not ready: {text}"
        if decision.active:
            return True, "ready: active"
        return True, f"ready: standing by for {decision.standby_for}"


class HealthServer:
    """/healthz and /readyz on one port, served from the operator's event loop."""

    def __init__(self, port: int, readiness: Readiness, address: str = "0.0.0.0") -> None:
        self.port = port
        self.address = address
        self.readiness = readiness
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(HEALTHZ_PATH, self.healthz)
        app.router.add_get(READYZ_PATH, self.readyz)
        # no access log: the kubelet probes every few seconds
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.address, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, _: web.Request) -> web.Response:
        ready, text = self.readiness.check()
        return web.Response(status=200 if ready else 503, text=text)
