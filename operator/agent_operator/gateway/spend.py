"""Where spend is kept. Local to the pod for now; shared across replicas later.

The rest of the gateway only sees the `SpendStore` protocol, so a store
backed by the Kubernetes API can replace the in-memory one without touching
the request path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class SpendStore(Protocol):
    """Spend in USD per period key (e.g. `day:2026-11-25`)."""

    def spent(self, period_key: str) -> float:
        """USD spent so far in the period."""
        ...

    def add(self, period_keys: Iterable[str], usd: float) -> None:
        """Charge `usd` to every period key (one call per accounted request)."""
        ...


class InMemorySpendStore:
    """This process's view: lost on restart, not shared with other replicas."""

    def __init__(self) -> None:
        self._spent: dict[str, float] = {}

    def spent(self, period_key: str) -> float:
        return self._spent.get(period_key, 0.0)

    def add(self, period_keys: Iterable[str], usd: float) -> None:
        for key in period_keys:
            self._spent[key] = self._spent.get(key, 0.0) + usd
