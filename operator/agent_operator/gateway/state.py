"""Reloadable state: keys and budget from the mounted volumes, swapped whole.

Each reload builds a new immutable object and assigns it in one step; a
request reads the attribute once and uses that object to the end, so a swap
never mixes old and new. A broken file keeps the last good version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from agent_operator.gateway.budget import Budget, BudgetFileError, load_budget
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


class GatewayState:
    """What the request path reads; every attribute is replaced, never mutated."""

    def __init__(self, settings: Settings, budget: Budget) -> None:
        self.settings = settings
        self.budget = budget
        self.upstream_key: UpstreamKey | None = None
        self.client_keys: ClientKeys | None = None
        self.budget_loaded = settings.budget_dir is None

    @property
    def ready(self) -> bool:
        """Config and keys loaded (what /readyz reports)."""
        keys_ok = self.settings.client_keys_dir is None or self.client_keys is not None
        return self.upstream_key is not None and keys_ok and self.budget_loaded


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
        self.state.upstream_key = upstream_key_from(snapshot[0])
        return True

    def _load_client_keys(self, directory: Path) -> bool:
        snapshot = load_secret(directory)
        if snapshot is None:
            return False
        self.state.client_keys = client_keys_from(snapshot[0])
        return True

    def _load_budget(self, directory: Path) -> bool:
        loaded = load_budget(directory)
        if loaded is None:
            return False
        config = loaded[0]
        self.state.budget.config = config
        self.state.budget_loaded = True
        for limit in config.limits:
            self.metrics.budget_limit.labels(limit.period).set(limit.max_usd)
        return True
