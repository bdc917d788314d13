"""Retries (tenacity), Retry-After and the per-upstream circuit breaker.

Retried: connection errors, timeouts before the response started, and
statuses 429/500/502/503/504. A stream is never retried once bytes went to
the client: the retry loop ends when response headers arrive.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# statuses that say the upstream is unhealthy (429 is the caller's quota, not health)
BREAKER_STATUSES = frozenset({500, 502, 503, 504})

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:  # "-0000" zone: HTTP-dates are GMT, not the host's local time
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


class RetryableStatus(Exception):
    """An upstream answer worth retrying; kept so the last one can be returned."""

    def __init__(
        self, status: int, headers: Mapping[str, str], body: bytes, retry_after: float | None
    ) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.headers = headers
        self.body = body
        self.retry_after = retry_after


class UpstreamUnreachable(Exception):
    """Connection error or timeout before any response header."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BreakerOpen(Exception):
    """The circuit breaker refused the attempt."""


class CircuitBreaker:
    """closed -> open after `threshold` consecutive failures; open -> half-open
    after `open_seconds`; half-open lets one probe through: success closes,
    failure opens again."""

    def __init__(
        self,
        threshold: int,
        open_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._on_change = on_change
        self.state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)

    def allow(self) -> bool:
        """May an attempt go upstream now? (Reserves the half-open probe.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self._clock() - self._opened_at < self.open_seconds:
                return False
            self._set(HALF_OPEN)
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._probe_in_flight = False
        self._set(CLOSED)

    def record_failure(self) -> None:
        self._probe_in_flight = False
        self._failures += 1
        if self.state == HALF_OPEN or self._failures >= self.threshold:
            self._opened_at = self._clock()
            self._set(OPEN)

    def release(self) -> None:
        """The attempt ended without a verdict (cancelled): free the probe slot."""
        self._probe_in_flight = False

    def record_neutral(self) -> None:
        """An answer that says nothing about health (e.g. 429): frees the probe."""
        if self.state == HALF_OPEN:
            self.record_success()


class RetryPolicy:
    """Builds one tenacity retrier per request from the gateway's retry flags."""

    def __init__(
        self,
        attempts: int,
        backoff_min: float,
        backoff_max: float,
        total_seconds: float,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.attempts = attempts
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.total_seconds = total_seconds
        self._rng = rng

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff (seconds) after `attempt` failed attempts."""
        ceiling = min(self.backoff_max, self.backoff_min * 2.0 ** (attempt - 1))
        return self.backoff_min + self._rng() * max(0.0, ceiling - self.backoff_min)

    def wait_for(self, exc: BaseException | None, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt`: Retry-After when the
        upstream gave one (capped by the total timeout), else the backoff."""
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return min(exc.retry_after, self.total_seconds)
        return self.backoff(attempt)

    def should_stop(self, attempt: int, elapsed: float, upcoming_sleep: float) -> bool:
        """Out of attempts, or the next wait would run past the total timeout."""
        return attempt >= self.attempts or elapsed + upcoming_sleep >= self.total_seconds

    def retrying(
        self,
        started: float,
        done: int = 0,
        before_sleep: Callable[[RetryCallState], Any] | None = None,
    ) -> AsyncRetrying:
        """A retrier for one request begun at `started` (time.monotonic()) that has
        already made `done` attempts outside tenacity (the cheap first try)."""

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            return self.wait_for(exc, state.attempt_number + done)

        def stop(state: RetryCallState) -> bool:
            elapsed = time.monotonic() - started
            return self.should_stop(state.attempt_number + done, elapsed, state.upcoming_sleep)

        return AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception_type((RetryableStatus, UpstreamUnreachable)),
            reraise=True,
            before_sleep=before_sleep,
        )
