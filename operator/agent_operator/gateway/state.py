"""Reloadable state: keys and budget from the mounted volumes, one frozen snapshot.

A reload builds a new `Snapshot` (upstream key, client keys, budget config)
and assigns it in one step; a request captures `state.snapshot` once, when
it arrives, and uses that object to the end, so a swap never mixes old and
new. A broken file keeps the last good version. The spend store (the ledger
view) is the process's one `Budget`, read once at admission.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent_operator.gateway.budget import Budget, BudgetConfig, BudgetFileError, load_budget
from agent_operator.gateway.config import Settings
from agent_operator.gateway.keys import (
    ClientKeys,
    KeyFileError,
    UpstreamKey,
    client_keys_from,
    load_secret,
    upstream_key_from,
)
from agent_operator.gateway.telemetry import JsonLog, Metrics
from agent_operator.gateway.volumes import Signature, signature
from agent_operator.sidecar import (
    BUDGET_FILE,
    BUDGET_VOLUME,
    CLIENT_KEYS_VOLUME,
    CREDENTIALS_VOLUME,
    SECRET_FILES,
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything reloadable a request reads, as of one moment."""

    upstream_key: UpstreamKey | None = None
    client_keys: ClientKeys | None = None
    budget: BudgetConfig = dataclasses.field(default_factory=BudgetConfig)
    budget_loaded: bool = False  # False: billed calls are refused (fail closed)


class GatewayState:
    """What the request path reads: `snapshot` is replaced whole, never mutated."""

    def __init__(self, settings: Settings, budget: Budget) -> None:
        self.settings = settings
        self.budget = budget
        self.snapshot = Snapshot(budget_loaded=settings.budget_dir is None)

    @property
    def ready(self) -> bool:
        """Config and keys loaded, spend already made known (what /readyz reports)."""
        snap = self.snapshot
        keys_ok = self.settings.client_keys_dir is None or snap.client_keys is not None
        return (
            snap.upstream_key is not None
            and keys_ok
            and snap.budget_loaded
            and self.budget.store.ready
        )


class Reloader:
    """Polls the mounted directories and reloads what changed (~1 s latency)."""

    def __init__(self, state: GatewayState, metrics: Metrics, log: JsonLog) -> None:
        self.state = state
        self.metrics = metrics
        self.log = log
        self._seen: dict[str, Signature] = {}
        s = state.settings
        self._volumes: list[tuple[str, Path, tuple[str, ...], Callable[[Path], bool]]] = [
            (CREDENTIALS_VOLUME, s.credentials_dir, SECRET_FILES, self._load_credentials)
        ]
        if s.client_keys_dir is not None:
            self._volumes.append(
                (CLIENT_KEYS_VOLUME, s.client_keys_dir, SECRET_FILES, self._load_client_keys)
            )
        if s.budget_dir is not None:
            self._volumes.append((BUDGET_VOLUME, s.budget_dir, (BUDGET_FILE,), self._load_budget))

    def poll(self) -> None:
        """Reload every volume whose files changed since the last successful load."""
        for volume, directory, names, load in self._volumes:
            current = signature(directory, names)
            if current == self._seen.get(volume):
                continue
            try:
                loaded = load(directory)
            except (KeyFileError, BudgetFileError, OSError, UnicodeDecodeError) as exc:
                self._seen[volume] = current  # do not retry until it changes again
                self.metrics.reloads.labels(volume, "error").inc()
                self.log.emit("error", "reload_failed", volume=volume, error=str(exc))
                continue
            if loaded:
                self._seen[volume] = current
                self.metrics.reloads.labels(volume, "ok").inc()
                self.log.emit("info", "reloaded", volume=volume)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.poll()
            except Exception as exc:  # an unforeseen error must not end hot reload for good
                self.log.emit("error", "reload_failed", volume="-", error=repr(exc))

    def _load_credentials(self, directory: Path) -> bool:
        snapshot = load_secret(directory)
        if snapshot is None:
            return False
        key = upstream_key_from(snapshot[0])
        self.state.snapshot = dataclasses.replace(self.state.snapshot, upstream_key=key)
        return True

    def _load_client_keys(self, directory: Path) -> bool:
        snapshot = load_secret(directory)
        if snapshot is None:
            return False
        keys = client_keys_from(snapshot[0])
        self.state.snapshot = dataclasses.replace(self.state.snapshot, client_keys=keys)
        return True

    def _load_budget(self, directory: Path) -> bool:
        loaded = load_budget(directory)
        if loaded is None:
            return False
        config = loaded[0]
        self.state.snapshot = dataclasses.replace(
            self.state.snapshot, budget=config, budget_loaded=True
        )
        for limit in config.limits:
            self.metrics.budget_limit.labels(limit.period).set(limit.max_usd)
        return True
