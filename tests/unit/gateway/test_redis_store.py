"""The Redis spend store against a real redis-server (see conftest.py)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis.exceptions

from agent_operator.gateway import redis_store
from agent_operator.gateway.redis_store import (
    DONE_TTL_SECONDS,
    KEY_TTL_SECONDS,
    MAX_USD,
    RedisSpendStore,
)
from agent_operator.gateway.spend import Hold, StoreUnavailable

if TYPE_CHECKING:
    from tests.fakes.redis_server import RedisServer

KEY = "day:2026-11-25"
MONTH = "month:2026-11"
PREFIX = "agents.dev:{demo/research}:"

Factory = Callable[..., RedisSpendStore]


@pytest.fixture
async def make_store() -> AsyncIterator[Factory]:
    """Stores on demand, all closed at the end."""
    made: list[RedisSpendStore] = []

    def make(url: str, **kwargs: Any) -> RedisSpendStore:
        store = RedisSpendStore(url, "demo", "research", **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[Any]:
    client = redis_server.client()
    yield client
    client.close()


async def eventually(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.02)


async def written(store: RedisSpendStore) -> None:
    """Let the store's settles land: the next admit writes them first."""
    await store.admit([KEY], [1e12], 0.0)


# --- basics ---------------------------------------------------------------------


async def test_admit_reserves_and_settle_charges(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    store = make_store(redis_server.url)
    assert not store.ready
    await store.start()
    assert store.ready

    hold = await store.admit([KEY], [1.0], 0.25)
    assert isinstance(hold, Hold)
    assert hold.keys == (KEY,) and hold.reserved_usd == 0.25 and hold.token
    assert raw.hget(f"{PREFIX}{KEY}:held", hold.token) == "0.25"
    assert raw.zscore(f"{PREFIX}{KEY}:expiry", hold.token) is not None

    store.settle(hold, 0.125)
    await written(store)
    assert raw.get(f"{PREFIX}{KEY}:spent") == "0.125"
    assert store.spent(KEY) == 0.125
    assert store.spent(MONTH) == 0.0
    assert not raw.hexists(f"{PREFIX}{KEY}:held", hold.token)
    # every key outlives the longest period, and is renewed on write
    assert 30 * 86400 < raw.ttl(f"{PREFIX}{KEY}:spent") <= KEY_TTL_SECONDS

    # another gateway sees the spend at its first answer
    other = make_store(redis_server.url)
    assert isinstance(await other.admit([KEY], [1.0], 0.0), Hold)
    assert other.spent(KEY) == 0.125


async def test_two_limits_sharing_a_key(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    store = make_store(redis_server.url)
    hold = await store.admit([KEY, KEY], [5.0, 1.0], 0.25)
    assert isinstance(hold, Hold)
    assert raw.hvals(f"{PREFIX}{KEY}:held") == ["0.25"]  # reserved once, not per limit
    store.settle(hold, 0.75)
    await written(store)
    assert store.spent(KEY) == 0.75  # charged once
    # the index is the position in `keys`, whichever limit of the shared key is reached
    assert await store.admit([KEY, KEY], [5.0, 0.5], 0.0) == 1
    assert await store.admit([KEY, KEY], [0.5, 5.0], 0.0) == 0


async def test_exhaustion_returns_the_first_limit_reached(
    redis_server: RedisServer, make_store: Factory
) -> None:
    store = make_store(redis_server.url)
    hold = await store.admit([KEY, MONTH], [10.0, 1.0], 0.0)
    assert isinstance(hold, Hold)
    store.settle(hold, 0.875)
    await written(store)
    assert store.spent(KEY) == store.spent(MONTH) == 0.875
    # a reservation that would cross the limit is refused; a smaller one fits
    assert await store.admit([KEY, MONTH], [10.0, 1.0], 0.25) == 1
    small = await store.admit([KEY, MONTH], [10.0, 1.0], 0.125)
    assert isinstance(small, Hold)
    # held now fills the month exactly: nothing more, not even unreserved
    assert await store.admit([KEY, MONTH], [10.0, 1.0], 0.0) == 1
    assert await store.admit([KEY, MONTH], [0.5, 1.0], 0.0) == 0
    store.settle(small, 0.125)
    await written(store)
    assert await store.admit([MONTH], [1.0], 0.0) == 0


# --- many gateways --------------------------------------------------------------


async def _hammer(store: RedisSpendStore, reserve: float, cost: float) -> int:
    """One caller: billed calls until refused; returns how many were admitted."""
    calls = 0
    while True:
        hold = await store.admit([KEY], [1.0], reserve)
        if isinstance(hold, int):
            return calls
        await asyncio.sleep(0.001)  # the call itself
        store.settle(hold, cost)
        calls += 1


async def _five_gateways(url: str, make: Factory, reserve: float, cost: float) -> int:
    stores = [make(url) for _ in range(5)]
    counts = await asyncio.gather(*(_hammer(s, reserve, cost) for s in stores for _ in range(4)))
    for store in stores:
        await store.close()  # writes what is unwritten
    return sum(counts)


async def test_no_overspend_when_reservations_cover_the_cost(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    # exact in binary, and not a divisor of the limit: the last call must not fit
    cost = 3 / 16
    calls = await _five_gateways(redis_server.url, make_store, reserve=cost, cost=cost)
    total = float(raw.get(f"{PREFIX}{KEY}:spent"))
    assert total == calls * cost  # no charge lost
    assert 1.0 - cost < total <= 1.0  # the budget is used up, never exceeded
    assert raw.hlen(f"{PREFIX}{KEY}:held") == 0


async def test_overspend_without_reservations_is_at_most_one_call_per_caller(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    cost, callers = 1 / 16, 5 * 4
    calls = await _five_gateways(redis_server.url, make_store, reserve=0.0, cost=cost)
    total = float(raw.get(f"{PREFIX}{KEY}:spent"))
    assert total == calls * cost  # no charge lost
    assert 1.0 <= total < 1.0 + callers * cost


async def test_reservations_of_a_crashed_gateway_lapse(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    now = [1_800_000_000.0]
    crashed = make_store(redis_server.url, clock=lambda: now[0], reservation_ttl_seconds=60)
    alive = make_store(redis_server.url, clock=lambda: now[0], reservation_ttl_seconds=60)
    assert isinstance(await crashed.admit([KEY], [1.0], 0.75), Hold)  # never settled
    assert await alive.admit([KEY], [1.0], 0.5) == 0
    now[0] += 59
    assert await alive.admit([KEY], [1.0], 0.5) == 0
    now[0] += 2
    assert isinstance(await alive.admit([KEY], [1.0], 0.5), Hold)
    assert raw.hlen(f"{PREFIX}{KEY}:held") == 1  # the lapsed one is gone
    assert raw.zcard(f"{PREFIX}{KEY}:expiry") == 1
    assert alive.spent(KEY) == 0.0


# --- Redis going away -------------------------------------------------------------


async def test_redis_down_fails_closed_queues_settles_and_recovers(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    errors: list[str] = []
    store = make_store(redis_server.url, on_error=errors.append)
    await store.start()
    first = await store.admit([KEY], [10.0], 0.5)
    second = await store.admit([KEY], [10.0], 0.5)
    assert isinstance(first, Hold) and isinstance(second, Hold)

    redis_server.stop()
    async with asyncio.timeout(5):  # about a second is expected; never a hang
        with pytest.raises(StoreUnavailable):
            await store.admit([KEY], [10.0], 0.5)
    store.settle(first, 0.25)  # never raises, never waits
    store.settle(second, 0.125)
    assert store.queued_settles == 2
    assert store.spent(KEY) == 0.375
    assert errors and all("ConnectionError" in e for e in errors)

    redis_server.start()  # empty: this server keeps nothing across restarts
    async with asyncio.timeout(5):
        again = await store.admit([KEY], [10.0], 0.5)
    assert isinstance(again, Hold)
    assert store.queued_settles == 0
    assert raw.get(f"{PREFIX}{KEY}:spent") == "0.375"  # queued settles written before it
    assert store.spent(KEY) == 0.375
    assert store.dropped_releases == 0


async def test_settle_in_flight_when_redis_dies_is_queued(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    store = make_store(redis_server.url)
    hold = await store.admit([KEY], [10.0], 0.5)
    assert isinstance(hold, Hold)
    redis_server.stop()
    store.settle(hold, 0.25)  # the store does not know yet: the write fails, then queues
    await eventually(lambda: store.queued_settles == 1)
    redis_server.start()
    await eventually(lambda: store.queued_settles == 0)  # the retry loop, no admit needed
    assert raw.get(f"{PREFIX}{KEY}:spent") == "0.25"


async def test_start_without_redis_does_not_raise_and_becomes_ready(
    redis_server: RedisServer, make_store: Factory
) -> None:
    redis_server.stop()
    store = make_store(redis_server.url)
    await store.start()
    assert not store.ready
    redis_server.start()
    await eventually(lambda: store.ready)
    assert isinstance(await store.admit([KEY], [1.0], 0.0), Hold)


async def test_errors_never_show_the_url(make_store: Factory, unreachable_redis_url: str) -> None:
    errors: list[str] = []
    url = unreachable_redis_url.replace("redis://", "redis://default:s3cret-pw@")
    store = make_store(url, on_error=errors.append)
    await store.start()
    with pytest.raises(StoreUnavailable) as refused:
        await store.admit([KEY], [1.0], 0.0)
    assert errors
    for text in [*errors, str(refused.value)]:
        assert "s3cret" not in text and "127.0.0.1" not in text


# --- hostile input ----------------------------------------------------------------


ODD_KEYS = ["day:{x}", "a b:c", "ключ:ü", "x]]--'\"", "*?[", "}{", "day:2026-11-25:held"]


async def test_odd_keys_are_kept_apart_under_the_agents_hash_tag(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    store = make_store(redis_server.url)
    for i, key in enumerate(ODD_KEYS):
        hold = await store.admit([key], [1.0], 0.0)
        assert isinstance(hold, Hold)
        store.settle(hold, (i + 1) / 64)
    await written(store)
    for i, key in enumerate(ODD_KEYS):
        assert store.spent(key) == (i + 1) / 64
        assert float(raw.get(f"{PREFIX}{key}:spent")) == (i + 1) / 64
    # one hash tag, the agent's: a Redis Cluster keeps them on one slot
    assert all(k.startswith(PREFIX) for k in raw.keys("*"))


@pytest.mark.parametrize(
    ("keys", "limits", "reserve"),
    [
        ([KEY], [1.0], math.nan),
        ([KEY], [1.0], math.inf),
        ([KEY], [1.0], -0.5),
        ([KEY], [1.0], MAX_USD * 10),
        ([KEY], [1.0], 1e308),
        ([KEY], [math.nan], 0.0),
        ([KEY], [math.inf], 0.0),
        ([KEY], [-1.0], 0.0),
        ([KEY], [1.0, 2.0], 0.0),
        ([""], [1.0], 0.0),
        (["day\n1"], [1.0], 0.0),
        (["day\x00"], [1.0], 0.0),
        (["\ud800"], [1.0], 0.0),
        (["d" * 129], [1.0], 0.0),
        ([7], [1.0], 0.0),
    ],
)
async def test_hostile_admit_is_refused_before_redis(
    make_store: Factory,
    unreachable_redis_url: str,
    keys: list[Any],
    limits: list[float],
    reserve: float,
) -> None:
    # nothing listens there: a ValueError (not StoreUnavailable) proves Redis was not asked
    store = make_store(unreachable_redis_url)
    with pytest.raises(ValueError):
        await store.admit(keys, limits, reserve)


async def test_hostile_settle(redis_server: RedisServer, make_store: Factory) -> None:
    errors: list[str] = []
    store = make_store(redis_server.url, on_error=errors.append)
    hold = await store.admit([KEY], [1e12], MAX_USD)
    assert isinstance(hold, Hold)
    for bad in (math.nan, -1.0):
        with pytest.raises(ValueError):
            store.settle(hold, bad)
    store.settle(hold, math.inf)  # absurd usage: charged at the cap, never dropped
    await written(store)
    assert store.spent(KEY) == MAX_USD
    assert errors and "clamped" in errors[0]


@pytest.mark.parametrize(("namespace", "agent"), [("demo", "a}b"), ("de{mo", "a"), ("", "a")])
def test_names_that_would_move_the_hash_tag_are_refused(namespace: str, agent: str) -> None:
    with pytest.raises(ValueError):
        RedisSpendStore("redis://127.0.0.1:1/0", namespace, agent)


# --- Redis stalling: commands that timed out still run when it resumes ----------------


def done_key(token: str) -> str:
    return f"{PREFIX}token:{token}:done"


def log_every_command(raw: Any) -> None:
    raw.config_set("slowlog-log-slower-than", 0)
    raw.config_set("slowlog-max-len", 10_000)


def runs_naming(raw: Any, token: str) -> int:
    """Scripts Redis ran with `token` among their arguments (see log_every_command)."""
    return sum(
        1
        for entry in raw.slowlog_get(10_000)
        if entry["command"].startswith(b"EVAL") and token.encode() in entry["command"]
    )


def held_anywhere(raw: Any) -> int:
    """Reservations still held, in every period key."""
    return sum(
        raw.hlen(k) + raw.zcard(k.removesuffix(":held") + ":expiry") for k in raw.keys("*:held")
    )


async def test_settles_timed_out_on_a_stalled_redis_count_once(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    store = make_store(redis_server.url)
    warm = await store.admit([KEY, MONTH], [100.0, 100.0], 0.5)
    assert isinstance(warm, Hold)
    store.settle(warm, 0.5)  # both scripts cached from now on: EVALSHA, as in production
    await eventually(lambda: store.spent(KEY) == 0.5)
    # at once: ten pooled connections, so each settle below is sent on one at the freeze
    holds = await asyncio.gather(
        *(store.admit([KEY, MONTH], [100.0, 100.0], 0.5) for _ in range(10))
    )
    costs = [(i + 1) / 16 for i in range(10)]  # exact in binary: sums compare exactly
    log_every_command(raw)

    redis_server.pause()
    for hold, cost in zip(holds, costs, strict=True):
        assert isinstance(hold, Hold)
        store.settle(hold, cost)  # sent: Redis has them in its buffers, unanswered
    await eventually(lambda: store.queued_settles == 10)  # timed out after 1 s: queued
    await asyncio.sleep(2.5)  # the retry loop sends them again, and times out again
    assert store.queued_settles == 10
    redis_server.resume()  # Redis runs every copy it was sent

    await eventually(lambda: store.queued_settles == 0, 10)
    total = 0.5 + sum(costs)
    for key in (KEY, MONTH):
        assert float(raw.get(f"{PREFIX}{key}:spent")) == total  # each settle counted once
        assert store.spent(key) == total
    assert held_anywhere(raw) == 0
    # Redis did run each settle more than once: the copies sent before the resume
    assert all(runs_naming(raw, str(hold.token)) >= 2 for hold in holds)
    assert DONE_TTL_SECONDS - 60 < raw.ttl(done_key(str(holds[0].token))) <= DONE_TTL_SECONDS


async def test_admit_timed_out_on_a_stalled_redis_holds_no_budget(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    store = make_store(redis_server.url)
    warm = await store.admit([KEY], [1.0], 0.25)
    assert isinstance(warm, Hold)
    store.settle(warm, 0.25)
    await eventually(lambda: store.spent(KEY) == 0.25)
    log_every_command(raw)

    redis_server.pause()
    async with asyncio.timeout(3):  # refused after the 1 s timeout, never a hang
        with pytest.raises(StoreUnavailable):
            await store.admit([KEY], [1.0], 0.75)  # sent: Redis will run it on resume
    await asyncio.sleep(1.5)  # the retry loop sends the release meanwhile
    redis_server.resume()  # the late admit and its release run, in either order

    # the rest of the budget is free at once: the late admit reserved nothing that stays
    rest = await store.admit([KEY], [1.0], 0.75)
    assert isinstance(rest, Hold)
    assert raw.hkeys(f"{PREFIX}{KEY}:held") == [rest.token]
    store.settle(rest, 0.75)
    await eventually(lambda: store.spent(KEY) == 1.0)
    assert held_anywhere(raw) == 0
    marks = {k.removeprefix(f"{PREFIX}token:").removesuffix(":done") for k in raw.keys("*:done")}
    (refused,) = marks - {warm.token, rest.token}  # the refused admit's id: released
    assert runs_naming(raw, refused) == 2  # the admit did run late, and its release


async def test_late_admit_after_its_release_reserves_nothing(
    redis_server: RedisServer, raw: Any, make_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: the admit is held back until its release was written, then runs."""
    store = make_store(redis_server.url)
    real = store._admit_script
    sent: list[tuple[list[str], list[Any]]] = []

    async def stalled(keys: list[str], args: list[Any]) -> Any:
        sent.append((keys, args))
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(store, "_admit_script", stalled)
    with pytest.raises(StoreUnavailable):
        await store.admit([KEY, MONTH], [1.0, 1.0], 0.75)
    (keys, args), token = sent[0], sent[0][1][4]
    await eventually(lambda: raw.exists(done_key(token)) == 1)  # the release is written

    assert await real(keys=keys, args=args) == [-2]  # Redis runs the admit late: a no-op
    assert held_anywhere(raw) == 0
    monkeypatch.setattr(store, "_admit_script", real)
    assert isinstance(await store.admit([KEY, MONTH], [1.0, 1.0], 1.0), Hold)


async def test_admit_whose_reply_was_lost_is_released(
    redis_server: RedisServer, raw: Any, make_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order: Redis reserved, the answer never came; the release frees it."""
    store = make_store(redis_server.url)
    real = store._admit_script

    async def reply_lost(keys: list[str], args: list[Any]) -> Any:
        await real(keys=keys, args=args)
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(store, "_admit_script", reply_lost)
    with pytest.raises(StoreUnavailable):
        await store.admit([KEY], [1.0], 0.75)
    assert raw.hlen(f"{PREFIX}{KEY}:held") == 1
    await eventually(lambda: held_anywhere(raw) == 0)  # released by the retry loop
    monkeypatch.setattr(store, "_admit_script", real)
    assert isinstance(await store.admit([KEY], [1.0], 1.0), Hold)


async def test_settle_whose_reply_was_lost_counts_once(
    redis_server: RedisServer, raw: Any, make_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(redis_server.url)
    hold = await store.admit([KEY], [10.0], 0.5)
    assert isinstance(hold, Hold)
    real = store._finish_script
    runs = 0

    async def first_reply_lost(keys: list[str], args: list[Any]) -> Any:
        nonlocal runs
        runs += 1
        reply = await real(keys=keys, args=args)
        if runs == 1:
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        return reply

    monkeypatch.setattr(store, "_finish_script", first_reply_lost)
    store.settle(hold, 0.25)
    await eventually(lambda: runs >= 2 and store.queued_settles == 0)
    assert raw.get(f"{PREFIX}{KEY}:spent") == "0.25"
    assert store.spent(KEY) == 0.25
    assert held_anywhere(raw) == 0


async def test_settle_of_a_hold_without_token(
    redis_server: RedisServer, raw: Any, make_store: Factory
) -> None:
    store = make_store(redis_server.url)
    store.settle(Hold((KEY, KEY)), 0.25)  # each gets an id of its own: two calls, two charges
    store.settle(Hold((KEY,)), 0.5)
    await eventually(lambda: store.spent(KEY) == 0.75)
    assert raw.get(f"{PREFIX}{KEY}:spent") == "0.75"


async def test_queue_is_bounded_and_merging_never_counts_twice(
    redis_server: RedisServer, raw: Any, make_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound, calls = 3, 7
    monkeypatch.setattr(redis_store, "MAX_QUEUED_TOKENS", bound)
    errors: list[str] = []
    store = make_store(redis_server.url, on_error=errors.append)
    holds = [await store.admit([KEY, MONTH], [100.0, 100.0], 0.5) for _ in range(calls)]
    costs = [(i + 1) / 16 for i in range(calls)]

    redis_server.pause()
    with pytest.raises(StoreUnavailable):  # its release is queued (and sent): 1 of 3
        await store.admit([KEY], [100.0], 0.5)
    for hold, cost in zip(holds, costs, strict=True):
        assert isinstance(hold, Hold)
        store.settle(hold, cost)  # Redis is known down: never sent, queued at once
    # 2 more fit in the queue; 5 merged, whose ids are kept up to the bound, 2 dropped
    assert store.queued_settles == calls
    assert store.merged_settles == calls - (bound - 1)
    assert store.dropped_releases == calls - (bound - 1) - bound
    assert store.spent(KEY) == store.spent(MONTH) == sum(costs)
    assert any("merged" in e for e in errors) and any("lapse" in e for e in errors)
    await asyncio.sleep(1.5)  # the retry loop sends the queue, not the merged batch
    redis_server.resume()

    await eventually(lambda: store.queued_settles == 0, 10)
    for key in (KEY, MONTH):
        assert float(raw.get(f"{PREFIX}{key}:spent")) == sum(costs)  # nothing lost or doubled
        assert store.spent(key) == sum(costs)
    # only the dropped ids stay held, until their reservations lapse
    assert raw.hlen(f"{PREFIX}{KEY}:held") == store.dropped_releases


async def test_settles_beyond_the_writes_in_flight_queue(
    redis_server: RedisServer, raw: Any, make_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "MAX_WRITES_IN_FLIGHT", 2)
    store = make_store(redis_server.url)
    holds = [await store.admit([KEY], [100.0], 0.5) for _ in range(6)]
    for hold in holds:
        assert isinstance(hold, Hold)
        store.settle(hold, 0.125)
    assert store.queued_settles == 4  # 2 sent at once, the rest wait for the next flush
    await eventually(lambda: store.queued_settles == 0)
    await eventually(lambda: store.spent(KEY) == 0.75)
    assert raw.get(f"{PREFIX}{KEY}:spent") == "0.75"
    assert held_anywhere(raw) == 0
