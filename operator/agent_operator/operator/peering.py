"""Which replica acts: kopf peering, read back and enforced by a gate of our own.

kopf peering (kopf/_core/engines/peering.py): every replica writes a record
{priority, lifetime, lastseen} under its identity into the status of a
KopfPeering object (a ClusterKopfPeering when cluster-wide), renewed every
lifetime - 5..10 s but at least every second. A replica pauses its watch
streams while a live peer (lastseen + lifetime still ahead) has a higher *or
equal* priority, and resumes when that peer leaves (a clean exit deletes its
record) or its record expires (kill -9: within one lifetime).

kopf alone is not enough: our workers also act on timers (resync, retries)
that kopf knows nothing of; kopf freezes every replica of equal priority by
design (zalando-incubator/kopf#51), so identical pods given one priority would
all stand still; and a replica whose keep-alives stall keeps acting while its
peers already take it for dead. So a PeeringMonitor reads the same objects
every second and decides by kopf's rule plus three of ours:

- of two live replicas of equal priority, the one with the greater identity
  steps one below (in kopf's settings too, so its next keep-alive says so);
- a replica acts only while its own record stays live for FENCE_SECONDS more;
- a replica that outranks live peers (an explicit higher priority joining)
  acts only HANDOFF_SECONDS after its record appeared, when they have seen it.

Every reconcile asks `active` first; kopf's pause only saves the watch traffic.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import kopf

from agent_operator.operator import metrics
from agent_operator.operator.kube import Kube

log = logging.getLogger("agent_operator.operator")

GROUP_VERSION: Final = "kopf.dev/v1"
POLL_SECONDS: Final = 1.0  # one GET of each peering object this often
TICK_SECONDS: Final = 0.2  # decisions are re-evaluated this often (records expire by time)
FENCE_SECONDS: Final = 2.0  # stop acting this long before our own record expires
HANDOFF_SECONDS: Final = 2.5  # > 2 polls: outranked live peers have seen us and stopped
_DEFAULT_LIFETIME: Final = 60  # what kopf assumes of a record that names none

Scope = str | None  # a watched namespace, or None for the cluster-wide peering


def auto_priority(started: float, salt: int) -> int:
    """The priority of `--priority auto`: negative, so below every explicit priority
    (>= 0); higher the earlier the replica started (`started`: Unix time in seconds,
    used to the millisecond), so a restarted or new replica never preempts a working
    one; `salt` (random, 0..1023) keeps replicas started in one millisecond apart."""
    return -(int(started * 1000) * 1024 + salt % 1024)


@dataclass(frozen=True)
class Peer:
    """One record of a peering object."""

    identity: str
    priority: int
    deadline: datetime  # lastseen + lifetime: dead from then on


def parse_peers(status: Mapping[str, Any]) -> list[Peer]:
    """The records of a peering object's status; malformed ones are left out."""
    peers = []
    for identity, info in status.items():
        if not isinstance(info, Mapping):
            continue
        try:
            lastseen = datetime.fromisoformat(str(info["lastseen"]))
            priority = int(info.get("priority", 0))
            lifetime = int(info.get("lifetime", _DEFAULT_LIFETIME))
        except (KeyError, TypeError, ValueError):
            continue
        if lastseen.tzinfo is None:
            lastseen = lastseen.replace(tzinfo=UTC)
        peers.append(Peer(str(identity), priority, lastseen + timedelta(seconds=lifetime)))
    return peers


@dataclass(frozen=True)
class Decision:
    """Whether we may act, after one or all peering objects."""

    active: bool
    standby_for: str | None = None  # the live peer we leave the work to
    step_down: bool = False  # tied with a smaller identity: go one priority below
    problem: str | None = None  # why we are neither active nor a healthy standby


def decide(peers: Sequence[Peer], me: str, priority: int, now: datetime, settled: bool) -> Decision:
    """Our part by kopf's rule (a live peer of higher or equal priority wins) and ours.

    `settled`: our own record has been live for HANDOFF_SECONDS at least.
    """
    live = [p for p in peers if p.identity != me and p.deadline > now]
    own = next((p for p in peers if p.identity == me), None)
    problem = None
    if own is None:
        problem = "own keep-alive not seen yet"
    elif own.deadline - timedelta(seconds=FENCE_SECONDS) <= now:
        problem = f"own keep-alive is late (record expires {own.deadline:%H:%M:%S} UTC)"
    above = [p for p in live if p.priority >= priority]
    if above:
        winner = max(above, key=lambda p: (p.priority, p.identity))
        tied = any(p.priority == priority and p.identity < me for p in live)
        return Decision(False, standby_for=winner.identity, step_down=tied, problem=problem)
    if problem is not None:
        return Decision(False, problem=problem)
    if live and not settled:
        return Decision(False, standby_for=max(live, key=lambda p: p.priority).identity)
    return Decision(True)


def combine(decisions: Iterable[Decision]) -> Decision:
    """One decision for several peering objects: active only where all agree (kopf too
    pauses every watch when one object shows a conflict)."""
    decisions = list(decisions)
    return Decision(
        active=all(d.active for d in decisions),
        standby_for=next((d.standby_for for d in decisions if d.standby_for), None),
        step_down=any(d.step_down for d in decisions),
        problem=next((d.problem for d in decisions if d.problem), None),
    )


@dataclass(frozen=True)
class _View:
    fetched: float  # monotonic time of the GET
    body: Mapping[str, Any] | None  # None: the object (or its kind) does not exist


class PeeringMonitor:
    """Reads the peering objects of our scopes; `active` says whether we may act now.

    Without a peering name (standalone) always active. `mandatory` (--peering NAME):
    a missing object means waiting, as kopf does; else (kopf's auto-detection of the
    object `default`) it means acting alone.
    """

    def __init__(
        self,
        kube: Kube,
        name: str | None,
        identity: str,
        priority: int,
        *,
        scopes: Sequence[Scope],
        mandatory: bool,
        lifetime: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.name = name
        self.identity = identity
        self.priority = priority
        self.scopes = tuple(scopes)
        self.mandatory = mandatory
        self.lifetime = lifetime
        self.clock = clock
        self.decision = Decision(active=name is None)
        self.views: dict[Scope, _View] = {}
        self.errors: dict[Scope, str] = {}
        self.own_since: dict[Scope, float] = {}
        self.listeners: list[Callable[[bool], None]] = []
        self._kopf: kopf.OperatorSettings | None = None
        metrics.PEERING_ACTIVE.set(int(self.decision.active))

    @property
    def active(self) -> bool:
        return self.decision.active

    @property
    def enabled(self) -> bool:
        return self.name is not None

    @property
    def clusterwide(self) -> bool:
        return self.scopes == (None,)

    @property
    def resource(self) -> str:
        """The peering objects' resource, as kubectl names it."""
        return ("clusterkopfpeerings" if self.clusterwide else "kopfpeerings") + ".kopf.dev"

    def bind(self, settings: kopf.OperatorSettings) -> None:
        """Make kopf use our priority and lifetime; a tie-break later changes both."""
        settings.peering.priority = self.priority
        settings.peering.lifetime = self.lifetime
        self._kopf = settings

    def path(self, scope: Scope) -> str:
        if scope is None:
            return f"/apis/{GROUP_VERSION}/clusterkopfpeerings/{self.name}"
        return f"/apis/{GROUP_VERSION}/namespaces/{scope}/kopfpeerings/{self.name}"

    def where(self, scope: Scope) -> str:
        kind = "ClusterKopfPeering" if scope is None else "KopfPeering"
        return f"{kind} {self.name}" if scope is None else f"{kind} {scope}/{self.name}"

    async def run(self) -> None:
        """Poll and decide until cancelled. Decisions never wait for a slow GET."""
        if not self.enabled:
            return
        fetching: asyncio.Future[None] | None = None
        last = -math.inf
        while True:
            now = self.clock()
            if (fetching is None or fetching.done()) and now - last >= POLL_SECONDS:
                last = now
                fetching = asyncio.ensure_future(asyncio.to_thread(self.fetch))
            self.evaluate()
            await asyncio.sleep(TICK_SECONDS)

    def fetch(self) -> None:
        """Blocking: GET every peering object once."""
        for scope in self.scopes:
            try:
                body = self.kube.get_path(self.path(scope))
            except Exception as err:  # the API's trouble; a stale view decides below
                error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                if self.errors.get(scope) != error:
                    log.warning("cannot read %s: %s", self.where(scope), error)
                self.errors[scope] = error
                continue
            self.errors.pop(scope, None)
            self.views[scope] = _View(self.clock(), body)

    def evaluate(self, now: datetime | None = None) -> Decision:
        """Decide from the latest views; act on a change (log, listeners, tie-break)."""
        if not self.enabled:
            return self.decision
        now = now or datetime.now(UTC)
        decision = combine(self._decide(scope, now) for scope in self.scopes)
        if decision.step_down:
            self._step_down()
            decision = combine(self._decide(scope, now) for scope in self.scopes)
        previous, self.decision = self.decision, decision
        metrics.PEERING_ACTIVE.set(int(decision.active))
        if decision != previous:
            if decision.active:
                log.info("peering: active (priority %d)", self.priority)
            elif decision.problem:
                log.info("peering: not acting: %s", decision.problem)
            else:
                log.info(
                    "peering: standing by for %s (priority %d)",
                    decision.standby_for,
                    self.priority,
                )
        if decision.active != previous.active:
            for listener in self.listeners:
                listener(decision.active)
        return decision

    def _decide(self, scope: Scope, now: datetime) -> Decision:
        view = self.views.get(scope)
        # Peers' records expire by time, so an old view could make us take over from a
        # live peer, or keep us acting after we lost touch: half a lifetime at most.
        if view is None or self.clock() - view.fetched > self.lifetime / 2:
            state = "not read yet" if view is None else "not read lately"
            error = self.errors.get(scope)
            return Decision(False, problem=f"{self.where(scope)} {state}: {error or 'waiting'}")
        if view.body is None:
            if self.mandatory:
                return Decision(False, problem=f"{self.where(scope)} not found")
            return Decision(True)  # kopf's auto-detection: no peering object, acting alone
        peers = parse_peers(view.body.get("status") or {})
        if any(p.identity == self.identity and p.deadline > now for p in peers):
            since = self.own_since.setdefault(scope, self.clock())
        else:
            self.own_since.pop(scope, None)
            since = math.inf
        settled = self.clock() - since >= HANDOFF_SECONDS
        return decide(peers, self.identity, self.priority, now, settled)

    def _step_down(self) -> None:
        self.priority -= 1
        if self._kopf is not None:
            self._kopf.peering.priority = self.priority
        log.warning(
            "peering: a replica with a smaller identity has our priority; going to %d",
            self.priority,
        )
