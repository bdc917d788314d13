"""Where spend is kept: the `SpendStore` protocol and the in-memory store.

The budget asks a store two things per billed call: may it start (`admit`,
awaited before the call) and what did it cost (`settle`, never awaited: the
answer is not held up by bookkeeping). Three stores implement it:

- `InMemorySpendStore`: this process only (no limits, or tests);
- `gateway.ledger.KubernetesSpendStore`: the shared SpendRecord ledger; admit
  reads a local view kept current by a watch, so it never waits on the API;
- `gateway.redis_store.RedisSpendStore`: strict, opt-in; admit is an atomic
  check-and-reserve in Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class StoreUnavailable(Exception):
    """The store cannot say how much was spent: billed calls are refused (fail closed)."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Permission for one billed call, given by `admit` and ended by `settle`."""

    keys: tuple[str, ...]  # period keys charged, fixed when the call was admitted
    reserved_usd: float = 0.0  # held against the limits until settled
    token: str | None = None  # the store's reservation id, if it keeps one


class SpendStore(Protocol):
    """Spend in USD per period key (e.g. `day:2026-11-25`)."""

    @property
    def ready(self) -> bool:
        """The store has loaded what was spent before (readiness)."""
        ...

    def spent(self, period_key: str) -> float:
        """Best-known USD spent in the period, by every replica (no I/O)."""
        ...

    async def admit(
        self, keys: Sequence[str], limits_usd: Sequence[float], reserve_usd: float
    ) -> Hold | int:
        """A Hold, or the index of the first limit already reached.

        `keys[i]` is limited to `limits_usd[i]`; a store that reserves holds
        `reserve_usd` against every key until settle. Raises StoreUnavailable
        when it cannot tell.
        """
        ...

    def settle(self, hold: Hold, usd: float) -> None:
        """Charge `usd` to the hold's keys and release its reservation (no waiting)."""
        ...

    async def start(self) -> None:
        """Load and begin background work (watch, flush)."""
        ...

    async def close(self) -> None:
        """Write what is unwritten (bounded wait) and stop."""
        ...


class InMemorySpendStore:
    """This process's view: lost on restart, not shared with other replicas."""

    def __init__(self) -> None:
        self._spent: dict[str, float] = {}

    @property
    def ready(self) -> bool:
        return True

    def spent(self, period_key: str) -> float:
        return self._spent.get(period_key, 0.0)

    async def admit(
        self, keys: Sequence[str], limits_usd: Sequence[float], reserve_usd: float
    ) -> Hold | int:
        for i, (key, limit) in enumerate(zip(keys, limits_usd, strict=True)):
            if self._spent.get(key, 0.0) >= limit:
                return i
        return Hold(tuple(keys))

    def settle(self, hold: Hold, usd: float) -> None:
        for key in dict.fromkeys(hold.keys):  # two limits of one period share a key
            self._spent[key] = self._spent.get(key, 0.0) + usd

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
