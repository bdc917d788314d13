"""A de-duplicating work queue with per-key exponential backoff (client-go's, in asyncio).

A key is queued at most once; a key added while a worker holds it is queued
again when the worker calls `done`, so one key never runs in two workers and
no change is lost. Delayed adds keep the earliest deadline per key.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down; workers should exit."""


class WorkQueue(Generic[K]):
    """Keys to reconcile, with a per-key retry backoff in seconds (see `backoff`)."""

    def __init__(
        self, base: float = 1.0, cap: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.base = base
        self.cap = cap
        self.clock = clock
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failing_since: dict[K, float] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._ready = asyncio.Condition()
        self._shut = False

    def __len__(self) -> int:
        return len(self._queue)

    def _put(self, key: K) -> None:
        if self._shut or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)

    async def add(self, key: K) -> None:
        """Queue `key` now (no-op when already queued)."""
        async with self._ready:
            self._put(key)
            self._ready.notify()

    def add_nowait(self, key: K) -> None:
        """Queue `key` from a timer or synchronous code on the loop."""
        self._put(key)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._ready:
            self._ready.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` after `delay` seconds; an earlier pending deadline wins."""
        if self._shut:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + max(delay, 0.0)
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add_nowait(key)

    def backoff(self, key: K) -> float:
        """Seconds until the next retry of `key`: as long as it has been failing, in [base, cap].

        Retries on this delay alone come at base, 2 base, 4 base, ... after the first
        failure (doubling). Counting failures instead would let a burst of events
        (its children being created) push a new object's first retries to minutes.
        """
        now = self.clock()
        since = self._failing_since.setdefault(key, now)
        return float(min(self.cap, max(self.base, now - since)))

    def forget(self, key: K) -> None:
        """Reset the backoff of `key` (after a success)."""
        self._failing_since.pop(key, None)

    async def get(self) -> K:
        """The next key; the caller owns it until `done`. Raises ShutDown."""
        async with self._ready:
            await self._ready.wait_for(lambda: bool(self._queue) or self._shut)
            if self._shut:
                raise ShutDown
            key = self._queue.popleft()
            self._processing.add(key)
            self._dirty.discard(key)
            return key

    async def done(self, key: K) -> None:
        """Release `key`; queue it again if it was added while held."""
        async with self._ready:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._ready.notify()

    async def shutdown(self) -> None:
        """Wake every waiting worker with ShutDown and cancel timers."""
        async with self._ready:
            self._shut = True
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            self._ready.notify_all()
