"""The strict spend store: an atomic check-and-reserve in Redis per billed call.

Opt-in (spec.budget.redis). Per period key, under one hash tag per agent so
that a Redis Cluster keeps an agent's keys on one slot:
`agents.dev:{<namespace>/<agent>}:<period key>:spent` (USD, a float string),
`...:held` (reservation id -> USD) and `...:expiry` (reservation id scored by
when it lapses). Every write renews a key's TTL of 40 days, longer than any
period.

The guarantee. `admit` lets a call start only while
`spent + held + reserve_usd <= limit` (and `spent + held < limit`), where
`held` sums the reservations not yet settled or lapsed, and holds
`reserve_usd` until `settle` charges the true cost. Hence:

- when every call's reserve_usd is at least its true cost, no limit is ever
  exceeded;
- otherwise a limit is exceeded by at most the shortfall (true cost minus
  reservation) of the calls admitted and not yet settled when the last call
  was admitted; with reserve_usd = 0 that is at most one call per concurrent
  caller, because a gateway writes the settles it was given before it admits
  again.

A reservation lapses after `reservation_ttl_seconds`, so a crashed gateway
frees the budget; a call that outlasts it counts as unreserved.

When Redis does not answer (1 s socket timeouts), `admit` raises
StoreUnavailable: billed calls are refused, never let through. Settles wait in
memory and are retried with backoff, written before any later admission; a
charge is lost only if the process dies first or Redis is still down at
`close` (reported), and one whose reply was lost may count twice (the error is
on the side of refusing). Spend is as durable as the
Redis server: run it with persistence.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import redis.asyncio
import redis.asyncio.retry
import redis.backoff
import redis.exceptions

from agent_operator.gateway.spend import Hold, StoreUnavailable

KEY_TTL_SECONDS: Final = 40 * 24 * 3600  # longer than a month, the longest period
SOCKET_TIMEOUT_SECONDS: Final = 1.0  # a dead Redis is noticed within about a second
MAX_USD: Final = 1e9  # no call costs this much; keeps INCRBYFLOAT far from overflow
MAX_KEY_CHARS: Final = 128
MAX_UNSENT_RELEASES: Final = 10_000  # releases beyond this are dropped: they lapse anyway
SETTLE_WAIT_SECONDS: Final = 2.0  # bound on waiting for this gateway's settles
RETRY_MIN_SECONDS: Final = 0.1
RETRY_MAX_SECONDS: Final = 5.0

_ERRORS: Final = (redis.exceptions.RedisError, OSError)

# KEYS: spent, held, expiry of each distinct period key.
# ARGV: now, lapses_at, key_ttl, reserve, id, then (key number, limit) per limit.
# Returns the index of the first limit reached (-1 when reserved), then spent per key.
_ADMIT: Final = """
local now = tonumber(ARGV[1])
local reserve = tonumber(ARGV[4])
local n = #KEYS / 3
local spent, total = {}, {}
for k = 1, n do
  local held, expiry = KEYS[3 * k - 1], KEYS[3 * k]
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now)) do
    redis.call('HDEL', held, id)
  end
  redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now)
  spent[k] = redis.call('GET', KEYS[3 * k - 2]) or '0'
  local t = tonumber(spent[k])
  for _, usd in ipairs(redis.call('HVALS', held)) do
    t = t + tonumber(usd)
  end
  total[k] = t
end
local refused = -1
for i = 6, #ARGV, 2 do
  local t, limit = total[tonumber(ARGV[i])], tonumber(ARGV[i + 1])
  if not (t < limit and t + reserve <= limit) then
    refused = (i - 6) / 2
    break
  end
end
if refused < 0 then
  for k = 1, n do
    redis.call('HSET', KEYS[3 * k - 1], ARGV[5], ARGV[4])
    redis.call('ZADD', KEYS[3 * k], ARGV[2], ARGV[5])
    for j = 3 * k - 2, 3 * k do
      redis.call('EXPIRE', KEYS[j], ARGV[3])
    end
  end
end
return {refused, unpack(spent)}
"""

# KEYS: spent, held, expiry of each period key charged.
# ARGV: key_ttl, then USD per key, then the reservation ids to release.
# Returns spent per key.
_SETTLE: Final = """
local n = #KEYS / 3
local spent = {}
for k = 1, n do
  if tonumber(ARGV[1 + k]) > 0 then
    spent[k] = redis.call('INCRBYFLOAT', KEYS[3 * k - 2], ARGV[1 + k])
  else
    spent[k] = redis.call('GET', KEYS[3 * k - 2]) or '0'
  end
  for i = n + 2, #ARGV do
    redis.call('HDEL', KEYS[3 * k - 1], ARGV[i])
    redis.call('ZREM', KEYS[3 * k], ARGV[i])
  end
  for j = 3 * k - 2, 3 * k do
    redis.call('EXPIRE', KEYS[j], ARGV[1])
  end
end
return spent
"""


class RedisSpendStore:
    """Spend shared by every gateway of one agent through Redis (see the module docstring)."""

    def __init__(
        self,
        url: str,
        namespace: str,
        agent: str,
        *,
        reservation_ttl_seconds: float = 600.0,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        for part in (namespace, agent):
            # a brace would move the hash tag, and with it the agent's slot
            if not part or "{" in part or "}" in part:
                raise ValueError(f"invalid namespace or agent name {part!r}")
        if not (math.isfinite(reservation_ttl_seconds) and reservation_ttl_seconds > 0):
            raise ValueError("reservation_ttl_seconds must be a positive number")
        self._prefix = f"agents.dev:{{{namespace}/{agent}}}:"
        self._reservation_ttl = reservation_ttl_seconds
        self._clock = clock
        self._on_error = on_error
        self._redis = redis.asyncio.Redis.from_url(
            url,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            # one immediate retry on a fresh connection: a pooled one may be stale after
            # a Redis restart; a timeout is not retried, so a dead Redis answers in ~1 s
            retry=redis.asyncio.retry.Retry(
                redis.backoff.NoBackoff(), 1, (redis.exceptions.ConnectionError,)
            ),
        )
        self._admit_script = self._redis.register_script(_ADMIT)
        self._settle_script = self._redis.register_script(_SETTLE)
        self._ready = False
        self._up = True  # last command answered; while down, settles queue directly
        self._closed = False
        self._spent: dict[str, float] = {}  # last spent Redis returned, per period key
        # settles not yet written: USD per key, reservations to release, settle count
        self._unsent_usd: dict[str, float] = {}
        self._unsent_ids: list[str] = []
        self._unsent_settles = 0
        self._sending: tuple[dict[str, float], int] = ({}, 0)  # the queue being written now
        self.dropped_releases = 0  # reservations not released (they lapse after their TTL)
        self._settling: set[asyncio.Task[None]] = set()
        self._flushing: asyncio.Task[bool] | None = None
        self._retrying: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def queued_settles(self) -> int:
        """Settles waiting for Redis to come back."""
        return self._unsent_settles + self._sending[1]

    def spent(self, period_key: str) -> float:
        unsent = self._unsent_usd.get(period_key, 0.0) + self._sending[0].get(period_key, 0.0)
        return self._spent.get(period_key, 0.0) + unsent

    async def admit(
        self, keys: Sequence[str], limits_usd: Sequence[float], reserve_usd: float
    ) -> Hold | int:
        keys, limits = tuple(keys), tuple(limits_usd)
        _check_keys(keys)
        if len(limits) != len(keys):
            raise ValueError("one limit per key")
        if not all(math.isfinite(limit) and limit >= 0 for limit in limits):
            raise ValueError("limits must be finite and >= 0 USD")
        if not (math.isfinite(reserve_usd) and 0 <= reserve_usd <= MAX_USD):
            raise ValueError(f"reserve_usd must be within [0, {MAX_USD:g}] USD")
        if not keys:
            return Hold((), reserve_usd)
        distinct = list(dict.fromkeys(keys))  # two limits of one period share a key
        token = uuid.uuid4().hex
        now = float(self._clock())
        args: list[str | int] = [
            repr(now),
            repr(now + self._reservation_ttl),
            KEY_TTL_SECONDS,
            repr(float(reserve_usd)),
            token,
        ]
        for key, limit in zip(keys, limits, strict=True):
            args += [distinct.index(key) + 1, repr(float(limit))]
        await self._catch_up()
        try:
            # a reply lost after Redis reserved leaves a reservation that lapses on its own
            reply = await self._admit_script(keys=self._redis_keys(distinct), args=args)
        except _ERRORS as exc:
            self._mark_down(exc)
            raise StoreUnavailable(f"redis spend store: {type(exc).__name__}") from exc
        self._mark_up()
        self._remember(distinct, reply[1:])
        refused = int(reply[0])
        return refused if refused >= 0 else Hold(keys, reserve_usd, token)

    def settle(self, hold: Hold, usd: float) -> None:
        if math.isnan(usd) or usd < 0:
            raise ValueError("usd must be a number >= 0")
        if usd > MAX_USD:  # e.g. absurd usage from an upstream: charged, never dropped
            self._report(f"redis spend store: charge above {MAX_USD:g} USD clamped")
            usd = MAX_USD
        if not hold.keys:
            return
        if self._closed:
            self._report("redis spend store: settle after close not written")
            return
        keys = tuple(dict.fromkeys(hold.keys))
        ids = [hold.token] if hold.token else []
        if not self._up or self._unsent_settles:
            self._keep(dict.fromkeys(keys, float(usd)), ids, 1)
            return
        task = asyncio.get_running_loop().create_task(self._write(keys, float(usd), ids))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def start(self) -> None:
        await self._ping()  # on failure the retry loop runs; ready stays False meanwhile

    async def close(self) -> None:
        self._closed = True
        if self._retrying is not None:
            self._retrying.cancel()
            await asyncio.gather(self._retrying, return_exceptions=True)
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=SETTLE_WAIT_SECONDS)
        if self._unsent_settles:
            await self._flush()
        lost = self._unsent_settles + len(self._settling)
        if lost:
            self._report(f"redis spend store: {lost} settles not written at close")
        for task in list(self._settling):
            task.cancel()
        await self._redis.aclose()

    # --- writing ------------------------------------------------------------------

    async def _catch_up(self) -> None:
        """Write this gateway's earlier settles before it admits again (the bound needs it)."""
        if self._settling:
            _, late = await asyncio.wait(set(self._settling), timeout=SETTLE_WAIT_SECONDS)
            if late:
                raise StoreUnavailable("redis spend store: settles not written in time")
        while self._unsent_settles:
            if not await self._flush():
                raise StoreUnavailable("redis spend store: settles not written")

    async def _write(self, keys: Sequence[str], usd: float, ids: list[str]) -> None:
        try:
            reply = await self._settle_script(
                keys=self._redis_keys(keys), args=[KEY_TTL_SECONDS, *[repr(usd)] * len(keys), *ids]
            )
        except _ERRORS as exc:
            self._mark_down(exc)
            self._keep(dict.fromkeys(keys, usd), ids, 1)
            return
        self._mark_up()
        self._remember(keys, reply)

    def _keep(self, usd_by_key: dict[str, float], ids: list[str], settles: int) -> None:
        """Queue settles for the retry loop: charges are summed per key, never dropped."""
        for key, usd in usd_by_key.items():
            self._unsent_usd[key] = self._unsent_usd.get(key, 0.0) + usd
        room = MAX_UNSENT_RELEASES - len(self._unsent_ids)
        if len(ids) > room:
            if not self.dropped_releases:
                self._report("redis spend store: release queue full; reservations will lapse")
            self.dropped_releases += len(ids) - max(room, 0)
        self._unsent_ids += ids[: max(room, 0)]
        self._unsent_settles += settles
        self._retry_in_background()

    async def _flush(self) -> bool:
        """Write every queued settle in one script; concurrent callers share one attempt."""
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._write_unsent())
        return await asyncio.shield(self._flushing)

    async def _write_unsent(self) -> bool:
        usd, ids, settles = self._unsent_usd, self._unsent_ids, self._unsent_settles
        if not settles:
            return True
        self._unsent_usd, self._unsent_ids, self._unsent_settles = {}, [], 0
        self._sending = (usd, settles)
        keys = list(usd)
        try:
            reply = await self._settle_script(
                keys=self._redis_keys(keys), args=[KEY_TTL_SECONDS, *map(repr, usd.values()), *ids]
            )
        except BaseException as exc:
            self._sending = ({}, 0)
            newer, self._unsent_ids = self._unsent_ids, []
            self._keep(usd, ids + newer, settles)  # back in the queue, oldest first
            if not isinstance(exc, _ERRORS):
                raise  # cancelled: the queue stays whole
            self._mark_down(exc)
            return False
        self._sending = ({}, 0)
        self._mark_up()
        self._remember(keys, reply)
        return True

    # --- health -------------------------------------------------------------------

    async def _ping(self) -> bool:
        try:
            await self._redis.ping()
        except _ERRORS as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    def _mark_up(self) -> None:
        self._up = True
        self._ready = True

    def _mark_down(self, exc: BaseException) -> None:
        if self._up:  # once per outage; the URL is never logged (it may hold a password)
            self._report(
                f"redis spend store: Redis unreachable ({type(exc).__name__}); "
                "billed calls refused, settles queued"
            )
        self._up = False
        self._retry_in_background()

    def _retry_in_background(self) -> None:
        if self._closed or (self._retrying is not None and not self._retrying.done()):
            return
        self._retrying = asyncio.get_running_loop().create_task(self._retry())

    async def _retry(self) -> None:
        """Until Redis answers and every queued settle is written, with backoff."""
        delay = RETRY_MIN_SECONDS
        while not self._closed:
            await asyncio.sleep(delay)
            ok = await (self._flush() if self._unsent_settles else self._ping())
            if ok and not self._unsent_settles:
                return
            delay = RETRY_MIN_SECONDS if ok else min(delay * 2, RETRY_MAX_SECONDS)

    # --- plumbing -----------------------------------------------------------------

    def _redis_keys(self, period_keys: Iterable[str]) -> list[str]:
        return [
            f"{self._prefix}{key}:{part}"
            for key in period_keys
            for part in ("spent", "held", "expiry")
        ]

    def _remember(self, keys: Sequence[str], spent: Sequence[bytes | str]) -> None:
        # replies may arrive out of order; spent in a period only grows
        for key, raw in zip(keys, spent, strict=True):
            value = float(raw)
            if value > self._spent.get(key, 0.0):
                self._spent[key] = value

    def _report(self, message: str) -> None:
        if self._on_error is not None:
            self._on_error(message)


def _check_keys(keys: Sequence[str]) -> None:
    for key in keys:
        if not (isinstance(key, str) and 0 < len(key) <= MAX_KEY_CHARS and key.isprintable()):
            raise ValueError(f"invalid period key {key!r:.80}")
