"""Five gateways share one budget through the Redis spend store (`--spend-store redis`).

The sibling of test_shared_budget.py on the strict store: real gateway
processes (tests/e2e/gateway/harness.py) and one real redis-server, against a
fake provider that bills every answer. Each call reserves its most expensive
outcome (`budget.reservation_usd`), here exactly its true cost, so the limit
is never exceeded at all. When Redis goes away (stopped, or frozen and
silent), billed calls fail closed (503) within seconds and the gateways keep
serving; when it returns they recover, and the charges of the calls in
flight at the stop are written then, not lost.

No control plane (the gateways run from their command line, as in
tests/e2e/gateway and tests/e2e/hostile), hence no `e2e` mark.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from tests.e2e.gateway.harness import UPSTREAM_KEY, Gateway, budget_json, run_gateway
from tests.fakes.redis_server import RedisServer, running_redis
from tests.fakes.upstream import FakeUpstream

from agent_operator.sidecar import REDIS_URL_ENV

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")
# the harness runs every gateway as --namespace team-a --agent demo: one set of keys
KEY_PREFIX = "agents.dev:{team-a/demo}:"
REPLICAS = 5
WORKERS = 2  # callers per gateway
MODEL = "ledger-model"
PRICE_OUT = 1000.0  # USD per 1M output tokens: 10 tokens (the fake's answer) = 0.01 USD
COST = 10 * PRICE_OUT / 1e6
LIMIT = 1.0
LATENCY = 0.1  # seconds the fake provider takes per answer
# max_tokens = the fake's answer length: each call reserves exactly its true cost
CHAT = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hello"}]}
COMPLETIONS = "/v1/chat/completions"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Persistent, as production runs it: a restart keeps every answered write."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    with running_redis(workdir, persistent=True) as server:
        yield server


@asynccontextmanager
async def gateways(
    tmp: Path, upstream: FakeUpstream, redis_url: str, limit_usd: float
) -> AsyncIterator[list[Gateway]]:
    """REPLICAS gateways of one agent on one Redis, stopped (SIGTERM) at the end."""
    budget = budget_json(
        limits=[{"period": "day", "maxUSD": limit_usd}],
        prices={MODEL: {"input": 0.0, "output": PRICE_OUT}},
    )
    env = {REDIS_URL_ENV: redis_url}
    async with AsyncExitStack() as stack:
        started = []
        for i in range(REPLICAS):
            home = tmp / f"gateway-{i}"
            home.mkdir()
            gateway = run_gateway(
                home, upstream.url + "/v1", budget=budget, args=["--spend-store", "redis"], env=env
            )
            started.append(await stack.enter_async_context(gateway))
        yield started


@dataclass(frozen=True, slots=True)
class Answer:
    gateway: int
    sent: float  # time.monotonic() seconds
    answered: float
    status: int
    error: str | None  # the error type of a refusal


class Load:
    """WORKERS callers per gateway, each calling CHAT in a loop; every answer is kept."""

    def __init__(self, gateways: list[Gateway]) -> None:
        self.gateways = gateways
        self.answers: list[Answer] = []

    def ok(self, since: float = 0.0) -> int:
        """Calls sent at or after `since` and answered 200."""
        return sum(1 for a in self.answers if a.status == 200 and a.sent >= since)

    def first_ok(self, gateway: int, since: float) -> float | None:
        """When gateway `gateway` first answered 200 to a call sent at or after `since`."""
        times = [
            a.answered
            for a in self.answers
            if a.gateway == gateway and a.status == 200 and a.sent >= since
        ]
        return min(times, default=None)

    async def call(self, session: aiohttp.ClientSession, i: int, body: Any = CHAT) -> Answer:
        sent = time.monotonic()
        async with session.post(self.gateways[i].outbound + COMPLETIONS, json=body) as r:
            error = None
            if r.status == 200:
                await r.read()
            else:
                error = str((await r.json(content_type=None))["error"]["type"])
            answer = Answer(i, sent, time.monotonic(), r.status, error)
        self.answers.append(answer)
        return answer

    async def until_refused(self) -> None:
        """Each caller stops at its first refusal."""

        async def caller(session: aiohttp.ClientSession, i: int) -> None:
            status = 200
            while status == 200:
                status = (await self.call(session, i)).status

        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(caller(session, i) for i in range(len(self.gateways)) for _ in range(WORKERS))
            )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Every caller goes on through refusals (pausing briefly after one) until the
        block ends; each then finishes its call. Cancelled if the block fails."""
        stop = asyncio.Event()

        async def caller(session: aiohttp.ClientSession, i: int) -> None:
            while not stop.is_set():
                if (await self.call(session, i)).status != 200:
                    await asyncio.sleep(0.05)

        async def callers() -> None:
            async with aiohttp.ClientSession() as session:
                await asyncio.gather(
                    *(caller(session, i) for i in range(len(self.gateways)) for _ in range(WORKERS))
                )

        task = asyncio.create_task(callers())
        try:
            yield
        except BaseException:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        stop.set()
        await task


def billed_usd(upstream: FakeUpstream) -> float:
    """What the provider billed for the model the budget prices."""
    return sum(out * PRICE_OUT / 1e6 for model, _, out in upstream.billed if model == MODEL)


def redis_spend(server: RedisServer) -> tuple[dict[str, float], int]:
    """USD spent per period key, and the reservations still held, as Redis has them."""
    client = server.client()
    try:
        spent = {
            key.removeprefix(KEY_PREFIX).removesuffix(":spent"): float(client.get(key) or 0)
            for key in client.scan_iter(match=KEY_PREFIX + "*:spent")
        }
        held = sum(int(client.hlen(key)) for key in client.scan_iter(match=KEY_PREFIX + "*:held"))
    finally:
        client.close()
    return spent, held


async def eventually(
    probe: Callable[[], T], ok: Callable[[T], bool], timeout: float, what: str
) -> T:
    """Poll `probe` until `ok` holds for its value; fail naming the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value}")
        await asyncio.sleep(0.05)


def assert_clean_output(tmp: Path) -> None:
    """No traceback and no key material in anything a gateway printed."""
    logs = sorted(tmp.glob("gateway-*/gateway.log"))
    assert len(logs) == REPLICAS
    for log in logs:
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, text[-4000:]
        assert UPSTREAM_KEY not in text


async def test_five_gateways_never_overspend_a_redis_budget(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with (
        FakeUpstream(delay=LATENCY) as upstream,
        gateways(tmp_path, upstream, redis_server.url, LIMIT) as gws,
    ):
        load = Load(gws)
        started = time.monotonic()
        await load.until_refused()
        elapsed = time.monotonic() - started
        refusals = {(a.status, a.error) for a in load.answers if a.status != 200}
        assert refusals == {(429, "budget_exhausted")}  # refused by the budget, nothing else

        # a streamed call is refused as well once the limit is reached
        async with aiohttp.ClientSession() as session:
            streamed = await load.call(session, 3, {**CHAT, "stream": True})
        assert (streamed.status, streamed.error) == (429, "budget_exhausted")

        charged = billed_usd(upstream)
        assert {(model, out) for model, _, out in upstream.billed} == {(MODEL, 10)}
        print(
            f"{load.ok()} calls in {elapsed:.2f}s; charged {charged:.6f} USD of {LIMIT} "
            f"(issue's bound {LIMIT + REPLICAS * COST:.2f}); overspend {charged - LIMIT:+.2e}"
        )
        # reservations cover the true cost: no overspend at all, not even one call
        assert charged <= LIMIT + 1e-9
        # and the budget was used: the last refusal saw spent + held + one call > limit
        assert charged > LIMIT - COST - 1e-9

        # nothing lost, nothing counted twice, no reservation left behind
        spent, _ = await eventually(
            lambda: redis_spend(redis_server),
            lambda s: sum(s[0].values()) == pytest.approx(charged, abs=1e-9) and s[1] == 0,
            5,
            f"Redis to hold {charged} USD spent and no reservation",
        )
        assert len(spent) == 1 and next(iter(spent)).startswith("day:"), spent
        assert all(g.process.poll() is None for g in gws)
    assert all(g.process.returncode == 0 for g in gws)
    assert_clean_output(tmp_path)


class SpendMismatch(AssertionError):
    """Redis's spend differs from what the provider billed, or reservations stayed held."""


# A frozen Redis, once resumed, runs what it was sent before the gateways gave up after
# their 1 s timeout (the settles of the calls out at the freeze, the probes' admits), as
# well as their retries: redis_store.py writes each call idempotently, so none counts
# twice and no late reservation stays held.
@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_redis_outage_fails_closed_and_loses_no_charge(
    tmp_path: Path, redis_server: RedisServer, outage: str
) -> None:
    """Stopped: connections refused at once; a restart keeps the append-only file.
    Frozen (SIGSTOP): connections accepted, nothing answered, until it resumes."""
    if outage == "stopped":
        go_away, come_back = redis_server.stop, redis_server.start
    else:
        go_away, come_back = redis_server.pause, redis_server.resume
    in_flight = REPLICAS * WORKERS  # every caller has one call out
    async with (
        FakeUpstream(delay=LATENCY) as upstream,
        gateways(tmp_path, upstream, redis_server.url, 1000.0) as gws,
        aiohttp.ClientSession() as session,
    ):
        load = Load(gws)
        async with load.running():
            await eventually(load.ok, lambda n: n >= 30, 10, "30 calls before the outage")

            # quiesce Redis, not the load: every caller waits on a slow answer and Redis
            # holds all that was answered, so the stop cuts no command in half (a reply
            # lost after Redis executed a settle would count it twice)
            slowed = time.monotonic()
            upstream.delay = 2.0
            await eventually(
                lambda: sum(1 for r in upstream.requests if r.received_at >= slowed),
                lambda n: n == in_flight,
                5,
                "every caller to wait on a slow answer",
            )
            await eventually(
                lambda: (billed_usd(upstream), redis_spend(redis_server)),
                lambda s: (
                    sum(s[1][0].values()) == pytest.approx(s[0], abs=1e-9) and s[1][1] == in_flight
                ),
                5,
                "Redis to hold what was answered, and one reservation per call out",
            )
            answered = len(upstream.billed)
            await asyncio.to_thread(go_away)
            stopped = time.monotonic()

            # billed calls are refused at once, on every gateway; the gateways stay live
            probes = await asyncio.gather(*(load.call(session, i) for i in range(REPLICAS)))
            time_to_503 = max(p.answered for p in probes) - stopped
            assert {(p.status, p.error) for p in probes} == {(503, "budget_unavailable")}
            assert time_to_503 < 5, "a billed call hung on the missing Redis"
            for g in gws:
                async with session.get(g.admin + "/healthz") as r:
                    assert r.status == 200

            # the calls out at the stop are answered; their settles wait for Redis
            await eventually(
                lambda: len(upstream.billed),
                lambda n: n == answered + in_flight,
                5,
                "the calls out at the stop to be answered",
            )
            upstream.delay = LATENCY
            await asyncio.sleep(2.5)  # long enough for every caller to be refused
            assert all(g.process.poll() is None for g in gws), "a gateway died without Redis"
            for g in gws:
                async with session.get(g.admin + "/healthz") as r:
                    assert r.status == 200
            during = [a for a in load.answers if a.sent >= stopped]
            assert {(a.status, a.error) for a in during} == {(503, "budget_unavailable")}
            assert len(during) >= REPLICAS + in_flight
            # the calls out at the stop were answered in full, and nothing else got through
            out = [a for a in load.answers if a.sent < stopped < a.answered]
            assert [a.status for a in out] == [200] * in_flight
            assert len(upstream.billed) == answered + in_flight

            await asyncio.to_thread(come_back)
            restarted = time.monotonic()
            firsts = await eventually(
                lambda: [load.first_ok(i, restarted) for i in range(REPLICAS)],
                lambda firsts: None not in firsts,
                10,
                "a 200 from every gateway after Redis returned",
            )
            recovery = max(t for t in firsts if t is not None) - restarted
            assert all(g.process.poll() is None for g in gws)  # the same processes, never restarted
            await eventually(
                lambda: load.ok(restarted), lambda n: n >= 30, 10, "30 calls after the outage"
            )

        # nothing lost: the queued settles drain while the gateways run
        charged = billed_usd(upstream)
        await eventually(
            lambda: sum(redis_spend(redis_server)[0].values()),
            lambda usd: usd >= charged - 1e-9,
            10,
            f"Redis to hold the {charged} USD the provider billed",
        )
        assert {(a.status, a.error) for a in load.answers} <= {
            (200, None),
            (503, "budget_unavailable"),
        }
        # reported once per outage by every gateway
        outages = [[r for r in g.logs() if r.get("event") == "redis_failed"] for g in gws]
        assert all(len(o) == 1 and "unreachable" in o[0]["error"] for o in outages), outages
    assert all(g.process.returncode == 0 for g in gws)
    assert_clean_output(tmp_path)

    # stopped cleanly, every gateway has written all it charged: nothing counted twice
    spent, held = redis_spend(redis_server)
    refused = sum(1 for a in load.answers if a.status == 503)
    print(
        f"Redis {outage}: 503 {time_to_503 * 1000:.0f} ms after; every gateway answering "
        f"{recovery * 1000:.0f} ms after it returned; {refused} calls refused; "
        f"charged {charged:.2f} USD, Redis {sum(spent.values()):.2f} USD, {held} held"
    )
    if abs(sum(spent.values()) - charged) > 1e-9 or held:
        raise SpendMismatch(
            f"Redis holds {sum(spent.values())} USD spent and {held} reservations "
            f"for {charged} USD billed"
        )
