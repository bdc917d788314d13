"""The strict spend store: an atomic check-and-reserve in Redis per billed call.

Opt-in (spec.budget.redis). Per period key, under one hash tag per agent so
that a Redis Cluster keeps an agent's keys on one slot:
`agents.dev:{<namespace>/<agent>}:<period key>:spent` (USD, a float string),
`...:held` (reservation id -> USD) and `...:expiry` (reservation id scored by
when it lapses). Every write renews a key's TTL of 40 days, longer than any
period. Per billed call, `agents.dev:{<namespace>/<agent>}:token:<id>:done`
marks the call finished (settled, or its reservation released) for
DONE_TTL_SECONDS, two hours (far longer than a stalled command can arrive
late, ~15 min of TCP retries): about 300 bytes of Redis memory per call of
the last two hours (25 MB at a million calls a day).

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
`close` (reported).

Each call counted once. A Redis that stalls (frozen, or a partition that
heals) rather than stops still runs, once it resumes, the commands it was sent
before the store gave up on them, and those retried since. So every write is
idempotent per reservation id: the settle script charges a call only when it
sets the call's `done` mark, and is a no-op when the mark is there; a queued
settle keeps its id, amount and keys until Redis answers it. After an admit
that failed or was cancelled, a release of its id is queued: it removes the
reservation and sets the mark, and the admit script reserves nothing for a
marked id, so an admit that Redis runs late, before or after the release
(they may travel on two pooled connections), holds no budget. A hold without
an id is settled under a fresh one. A hold is settled once. The mark outlives
any late command by far (a day against the kernel's ~15 min TCP retries).

Memory is bounded. The queue keeps at most MAX_QUEUED_TOKENS writes, one per
id, plus the settles whose write was out when Redis stopped answering (written
directly only while the queue is empty, at most MAX_WRITES_IN_FLIGHT at once;
beyond, a settle waits in the queue). A write that finds the queue full is
merged into one overflow batch, unless it is a settle already sent (Redis may
run that one late: merged, it could count twice): its USD is summed per key
(`merged_settles` counts such settles, reported once) and its id kept, to be
released and marked with the batch, which gets an id of its own and joins the
queue once there is room. So merging never counts twice. Past
MAX_QUEUED_TOKENS ids in the batch, an id is dropped (`dropped_releases`,
reported once): its charge is still written, but its reservation lapses only
after its TTL (and a late admit of a dropped release may hold budget as long).
Spend is as durable as the Redis server: run it with persistence.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import redis.asyncio
import redis.asyncio.retry
import redis.backoff
import redis.exceptions

from agent_operator.gateway.spend import Hold, StoreUnavailable

KEY_TTL_SECONDS: Final = 40 * 24 * 3600  # longer than a month, the longest period
DONE_TTL_SECONDS: Final = 2 * 3600  # a call's done mark: longer than any late command
SOCKET_TIMEOUT_SECONDS: Final = 1.0  # a dead Redis is noticed within about a second
MAX_USD: Final = 1e9  # no call costs this much; keeps INCRBYFLOAT far from overflow
MAX_KEY_CHARS: Final = 128
MAX_QUEUED_TOKENS: Final = 10_000  # queued writes kept per id; beyond, merged (see above)
MAX_WRITES_IN_FLIGHT: Final = 1_000  # settles written at once; beyond, they queue
FLUSH_BATCH: Final = 1_000  # queued writes per script run (each run is atomic)
SETTLE_WAIT_SECONDS: Final = 2.0  # bound on waiting for this gateway's settles
RETRY_MIN_SECONDS: Final = 0.1
RETRY_MAX_SECONDS: Final = 5.0

_ERRORS: Final = (redis.exceptions.RedisError, OSError)
_MARKED: Final = -2  # the admit script's answer for an id already finished

# KEYS: spent, held, expiry of each distinct period key, then the id's done mark.
# ARGV: now, lapses_at, key_ttl, reserve, id, then (key number, limit) per limit.
# Returns the index of the first limit reached (-1 when reserved), then spent per key;
# or {-2} alone when the id is finished (a late admit: it reserves nothing).
_ADMIT: Final = """
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then
  return {-2}
end
local now = tonumber(ARGV[1])
local reserve = tonumber(ARGV[4])
local n = (#KEYS - 1) / 3
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
-- run twice (a retry on a fresh connection), it answers as the first time did
if redis.call('HEXISTS', KEYS[2], ARGV[5]) == 0 then
  for i = 6, #ARGV, 2 do
    local t, limit = total[tonumber(ARGV[i])], tonumber(ARGV[i + 1])
    if not (t < limit and t + reserve <= limit) then
      refused = (i - 6) / 2
      break
    end
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

# Finishes calls: charges each (a settle) and releases its reservation, once per id.
# KEYS: spent, held, expiry of each distinct period key, then done marks.
# ARGV: key_ttl, done_ttl, n (period keys), then per call: id, its mark's KEYS index,
# c, c x (key number, USD), r, r x (further id released with it, its mark's KEYS index).
# Returns spent per period key.
_FINISH: Final = """
local key_ttl, done_ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local i = 4
while i <= #ARGV do
  local id, c = ARGV[i], tonumber(ARGV[i + 2])
  local r_at = i + 3 + 2 * c
  local r = tonumber(ARGV[r_at])
  -- the mark is set once: a call run again (late, or retried) is not charged again
  if redis.call('SET', KEYS[tonumber(ARGV[i + 1])], '1', 'NX', 'EX', done_ttl) then
    for j = i + 3, r_at - 1, 2 do
      local k, usd = tonumber(ARGV[j]), ARGV[j + 1]
      if tonumber(usd) > 0 then
        redis.call('INCRBYFLOAT', KEYS[3 * k - 2], usd)
      end
      redis.call('HDEL', KEYS[3 * k - 1], id)
      redis.call('ZREM', KEYS[3 * k], id)
      for m = r_at + 1, r_at + 2 * r, 2 do
        redis.call('HDEL', KEYS[3 * k - 1], ARGV[m])
        redis.call('ZREM', KEYS[3 * k], ARGV[m])
      end
    end
    for m = r_at + 1, r_at + 2 * r, 2 do
      redis.call('SET', KEYS[tonumber(ARGV[m + 1])], '1', 'NX', 'EX', done_ttl)
    end
  end
  i = r_at + 1 + 2 * r
end
local spent = {}
for k = 1, n do
  spent[k] = redis.call('GET', KEYS[3 * k - 2]) or '0'
  for j = 3 * k - 2, 3 * k do
    redis.call('EXPIRE', KEYS[j], key_ttl)
  end
end
return spent
"""


@dataclass(frozen=True, slots=True)
class _Finish:
    """One write of the finish script: a settle's charge, or a failed admit's release."""

    keys: tuple[str, ...]  # distinct period keys
    usd: tuple[float, ...]  # charged per key (the same for a settle, 0 for a release)
    settles: int  # settles it carries: 1, 0 for a release, more for an overflow batch
    releases: tuple[str, ...] = ()  # further ids released with it (an overflow batch's)

    def charges(self) -> Iterable[tuple[str, float]]:
        return zip(self.keys, self.usd, strict=True)


@dataclass(slots=True)
class _Overflow:
    """Writes merged past MAX_QUEUED_TOKENS, never sent yet: written as one."""

    usd: dict[str, float] = field(default_factory=dict)
    settles: int = 0
    ids: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.usd)


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
        self._finish_script = self._redis.register_script(_FINISH)
        self._ready = False
        self._up = True  # last command answered; while down, settles queue directly
        self._closed = False
        self._spent: dict[str, float] = {}  # last spent Redis returned, per period key
        # writes not yet answered, by id, oldest first; they stay here while being sent
        self._queue: dict[str, _Finish] = {}
        self._overflow = _Overflow()
        self._unsent_usd: dict[str, float] = {}  # USD in the queue and overflow, per key
        self.merged_settles = 0  # settles merged into the overflow batch (counted once)
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
        return sum(f.settles for f in self._queue.values()) + self._overflow.settles

    def spent(self, period_key: str) -> float:
        return self._spent.get(period_key, 0.0) + self._unsent_usd.get(period_key, 0.0)

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
        distinct = tuple(dict.fromkeys(keys))  # two limits of one period share a key
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
        redis_keys = [*self._redis_keys(distinct), self._done_key(token)]
        try:
            reply = await self._admit_script(keys=redis_keys, args=args)
        except (*_ERRORS, asyncio.CancelledError) as exc:
            # Redis may run it yet (stalled, or the reply was lost): release the id, which
            # also keeps a late admit from reserving
            self._keep(token, _Finish(distinct, (0.0,) * len(distinct), 0), sent=True)
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._mark_down(exc)
            raise StoreUnavailable(f"redis spend store: {type(exc).__name__}") from exc
        self._mark_up()
        refused = int(reply[0])
        if refused == _MARKED:  # a fresh id is never marked: Redis's answer is not sound
            raise StoreUnavailable("redis spend store: reservation id already finished")
        self._remember(distinct, reply[1:])
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
        finish = _Finish(keys, (float(usd),) * len(keys), 1)
        token = hold.token or uuid.uuid4().hex  # an id of its own makes it idempotent too
        if not self._up or self._pending() or len(self._settling) >= MAX_WRITES_IN_FLIGHT:
            self._keep(token, finish, sent=False)
            return
        task = asyncio.get_running_loop().create_task(self._write(token, finish))
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
        if self._pending():
            await self._flush()
        lost = self.queued_settles + len(self._settling)
        if lost:
            self._report(f"redis spend store: {lost} settles not written at close")
        for task in list(self._settling):
            task.cancel()
        await self._redis.aclose()

    # --- writing ------------------------------------------------------------------

    def _pending(self) -> bool:
        return bool(self._queue or self._overflow)

    async def _catch_up(self) -> None:
        """Write this gateway's earlier settles before it admits again (the bound needs it)."""
        if self._settling:
            _, late = await asyncio.wait(set(self._settling), timeout=SETTLE_WAIT_SECONDS)
            if late:
                raise StoreUnavailable("redis spend store: settles not written in time")
        while self._pending():
            if not await self._flush():
                raise StoreUnavailable("redis spend store: settles not written")

    async def _write(self, token: str, finish: _Finish) -> None:
        """A settle's first write; queued (as sent: Redis may yet run it) when it fails."""
        try:
            await self._run_finish({token: finish})
        except _ERRORS as exc:
            self._mark_down(exc)
            self._keep(token, finish, sent=True)
            return
        self._mark_up()

    def _keep(self, token: str, finish: _Finish, *, sent: bool) -> None:
        """Queue a write for the retry loop, under its id; never drops a charge."""
        if token in self._queue:
            return  # queued already: the same call
        if len(self._queue) < MAX_QUEUED_TOKENS or (sent and finish.settles):
            self._queue[token] = finish
        else:  # never sent, or a release: merged safely (the batch marks its id)
            overflow = self._overflow
            for key, usd in finish.charges():
                overflow.usd[key] = overflow.usd.get(key, 0.0) + usd
            overflow.settles += finish.settles
            if finish.settles:
                if not self.merged_settles:
                    self._report("redis spend store: settle queue full; settles merged")
                self.merged_settles += finish.settles
            if len(overflow.ids) < MAX_QUEUED_TOKENS:
                overflow.ids.append(token)
            else:
                if not self.dropped_releases:
                    self._report("redis spend store: release queue full; reservations will lapse")
                self.dropped_releases += 1
        for key, usd in finish.charges():
            self._unsent_usd[key] = self._unsent_usd.get(key, 0.0) + usd
        self._retry_in_background()

    def _recount(self) -> None:
        """USD still unwritten per key, summed afresh (no drift from adding and taking)."""
        unsent: dict[str, float] = {}
        charges = (finish.charges() for finish in self._queue.values())
        for key, usd in itertools.chain(*charges, self._overflow.usd.items()):
            unsent[key] = unsent.get(key, 0.0) + usd
        self._unsent_usd = unsent

    async def _flush(self) -> bool:
        """Write every queued write; concurrent callers share one attempt."""
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._write_unsent())
        return await asyncio.shield(self._flushing)

    async def _write_unsent(self) -> bool:
        """Oldest first, FLUSH_BATCH per script run; stops at the first failure."""
        while True:
            if self._overflow and len(self._queue) < MAX_QUEUED_TOKENS:
                overflow, self._overflow = self._overflow, _Overflow()
                batch = _Finish(
                    tuple(overflow.usd),
                    tuple(overflow.usd.values()),
                    overflow.settles,
                    tuple(overflow.ids),
                )
                self._queue[uuid.uuid4().hex] = batch  # its own id, fixed from now on
            if not self._queue:
                return True
            writes = dict(itertools.islice(self._queue.items(), FLUSH_BATCH))
            try:
                # they stay queued until answered: Redis may run them even if this fails
                await self._run_finish(writes)
            except _ERRORS as exc:
                self._mark_down(exc)
                return False
            for token in writes:
                del self._queue[token]
            self._recount()
            self._mark_up()

    async def _run_finish(self, writes: dict[str, _Finish]) -> None:
        """One run of the finish script (atomic); remembers the spent it answers."""
        period = list(dict.fromkeys(key for finish in writes.values() for key in finish.keys))
        number = {key: i + 1 for i, key in enumerate(period)}
        keys = self._redis_keys(period)
        args: list[str | int] = [KEY_TTL_SECONDS, DONE_TTL_SECONDS, len(period)]

        def mark(token: str) -> int:
            keys.append(self._done_key(token))
            return len(keys)

        for token, finish in writes.items():
            args += [token, mark(token), len(finish.keys)]
            for key, usd in finish.charges():
                args += [number[key], repr(usd)]
            args.append(len(finish.releases))
            for released in finish.releases:
                args += [released, mark(released)]
        reply = await self._finish_script(keys=keys, args=args)
        self._remember(period, reply)

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
        """Until Redis answers and every queued write is written, with backoff."""
        delay = RETRY_MIN_SECONDS
        while not self._closed:
            await asyncio.sleep(delay)
            ok = await (self._flush() if self._pending() else self._ping())
            if ok and not self._pending():
                return
            delay = RETRY_MIN_SECONDS if ok else min(delay * 2, RETRY_MAX_SECONDS)

    # --- plumbing -----------------------------------------------------------------

    def _redis_keys(self, period_keys: Iterable[str]) -> list[str]:
        return [
            f"{self._prefix}{key}:{part}"
            for key in period_keys
            for part in ("spent", "held", "expiry")
        ]

    def _done_key(self, token: str) -> str:
        # ends in ":done": never a period key's (":spent", ":held", ":expiry")
        return f"{self._prefix}token:{token}:done"

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
