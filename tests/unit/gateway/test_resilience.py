from __future__ import annotations

import email.utils
import time

import pytest

from agent_operator.gateway.resilience import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    RetryableStatus,
    RetryPolicy,
    UpstreamUnreachable,
    parse_retry_after,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-4", 0.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("", None),
        (None, None),
        ("soon", None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_state_machine() -> None:
    clock, states = Clock(), []
    breaker = CircuitBreaker(3, 10.0, clock=clock, on_change=states.append)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    breaker.record_success()  # success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == OPEN and not breaker.allow()
    clock.now = 9.9
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.record_failure()
    assert breaker.state == OPEN and not breaker.allow()
    clock.now = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allow()
    assert states == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


def test_half_open_probe_released_when_cancelled_or_neutral() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 1.0, clock=clock)
    breaker.record_failure()
    clock.now = 1.0
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()
    breaker.record_neutral()  # a 429 says nothing bad about health
    assert breaker.state == CLOSED


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    low = RetryPolicy(5, 1.0, 10.0, 30.0, rng=lambda: 0.0)
    high = RetryPolicy(5, 1.0, 10.0, 30.0, rng=lambda: 1.0)
    assert [low.backoff(n) for n in (1, 2, 3)] == [1.0, 1.0, 1.0]
    assert [high.backoff(n) for n in (1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_wait_prefers_retry_after_capped_by_total() -> None:
    policy = RetryPolicy(3, 0.1, 0.2, 5.0, rng=lambda: 0.0)
    assert policy.wait_for(RetryableStatus(429, {}, b"", 2.0), 1) == 2.0
    assert policy.wait_for(RetryableStatus(429, {}, b"", 99.0), 1) == 5.0
    assert policy.wait_for(RetryableStatus(503, {}, b"", None), 1) == 0.1
    assert policy.wait_for(UpstreamUnreachable("reset"), 1) == 0.1


def test_stop_on_attempts_and_deadline() -> None:
    policy = RetryPolicy(3, 0.1, 0.2, 5.0)
    assert not policy.should_stop(2, 1.0, 0.1)
    assert policy.should_stop(3, 1.0, 0.1)
    assert policy.should_stop(1, 1.0, 4.0)  # waiting would pass the total timeout


async def test_tenacity_retrier_counts_the_attempts_made_before_it() -> None:
    policy = RetryPolicy(3, 0.0, 0.0, 5.0)
    calls = 0

    async def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise UpstreamUnreachable("reset")

    started = time.monotonic()
    with pytest.raises(UpstreamUnreachable):
        async for attempt in policy.retrying(started, done=1):
            with attempt:
                await always_fails()
    assert calls == 2  # 1 already made + 2 here = the 3 attempts allowed


def test_retry_after_date_without_zone_is_gmt(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    # a "-0000" date parses naive; it was read in the host's zone (5 h off here)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        value = email.utils.formatdate(NOW + 30)  # "... -0000"
        assert value.endswith("-0000")
        assert parse_retry_after(value, NOW) == 30.0
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
