"""Keep a paused replica's work queue quiet too.

kopf peering pauses the watch streams of every replica but the one with the
highest priority. Our workers also act on timers (resync, retries with
backoff), which kopf knows nothing about, so each reconcile first asks the
same question kopf asks: is a live peer of higher or equal priority around?
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agent_operator.operator.kube import Kube

GROUP_VERSION = "kopf.dev/v1"


def may_act(peers: Mapping[str, Any], me: str, priority: int, now: datetime) -> bool:
    """True unless another live peer has a priority >= ours (kopf pauses on equal ones too)."""
    for identity, info in peers.items():
        if identity == me or not isinstance(info, Mapping):
            continue
        try:
            lastseen = datetime.fromisoformat(str(info["lastseen"]))
        except (KeyError, ValueError):
            continue
        if lastseen.tzinfo is None:
            lastseen = lastseen.replace(tzinfo=UTC)
        if lastseen + timedelta(seconds=int(info.get("lifetime", 60))) <= now:
            continue  # dead: kopf ignores it, and so do we
        if int(info.get("priority", 0)) >= priority:
            return False
    return True


class PeeringGate:
    """Reads the kopf peering object (cached for `ttl` seconds) to decide whether we act."""

    def __init__(
        self,
        kube: Kube,
        name: str | None,
        identity: str,
        priority: int,
        clusterwide: bool,
        ttl: float = 2.0,
    ) -> None:
        self.kube = kube
        self.name = name
        self.identity = identity
        self.priority = priority
        self.clusterwide = clusterwide
        self.ttl = ttl
        self._cache: dict[str, tuple[float, bool]] = {}

    def allows(self, namespace: str) -> bool:
        """Blocking: may this replica reconcile objects in `namespace` now?"""
        if self.name is None:
            return True
        scope = "" if self.clusterwide else namespace
        cached = self._cache.get(scope)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        if self.clusterwide:
            path = f"/apis/{GROUP_VERSION}/clusterkopfpeerings/{self.name}"
        else:
            path = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/kopfpeerings/{self.name}"
        body = self.kube.get_path(path)
        peers = (body or {}).get("status") or {}
        allowed = may_act(peers, self.identity, self.priority, datetime.now(UTC))
        self._cache[scope] = (time.monotonic(), allowed)
        return allowed
