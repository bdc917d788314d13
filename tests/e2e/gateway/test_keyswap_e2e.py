"""Key rotation under load: Kubernetes swaps `..data`, no request fails."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from tests.e2e.gateway.harness import CHAT, UPSTREAM_KEY, run_gateway
from tests.fakes.agent import FakeAgent
from tests.fakes.upstream import FakeUpstream
from tests.fakes.volumes import secret_files

CONCURRENCY = 200
NEW_KEY = "sk-upstream-two"


async def hammer(
    send: Callable[[aiohttp.ClientSession], Awaitable[int]],
    during: Callable[[], Awaitable[None]],
    per_worker: int = 200,
) -> Counter[int]:
    """CONCURRENCY workers send requests back to back until `during` returns
    (each at most `per_worker` requests, all within 20 s); returns the status
    counts, -1 for a client-side error."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + 20
    done = asyncio.Event()

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in range(per_worker):
            if done.is_set() or time.monotonic() > deadline:
                return
            try:
                statuses[await send(session)] += 1
            except aiohttp.ClientError:
                statuses[-1] += 1

    async def run_during() -> None:
        try:
            await during()
        finally:
            done.set()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(run_during(), *(worker(session) for _ in range(CONCURRENCY)))
    return statuses


async def test_upstream_key_swap_under_200_concurrent_requests(tmp_path: Path) -> None:
    async with FakeUpstream() as up:
        up.valid_keys = {UPSTREAM_KEY, NEW_KEY}
        async with run_gateway(tmp_path, up.url + "/v1") as gw:
            swapped_at: list[float] = []

            async def send(session: aiohttp.ClientSession) -> int:
                async with session.post(gw.outbound + "/v1/chat/completions", json=CHAT) as r:
                    await r.read()
                    return r.status

            async def swap() -> None:
                await asyncio.sleep(0.3)
                gw.credentials.update(secret_files(NEW_KEY, previous=UPSTREAM_KEY))
                swapped_at.append(time.monotonic())
                await asyncio.sleep(3.0)  # load goes on after the swap

            statuses = await hammer(send, swap)
            assert set(statuses) == {200}, statuses
            assert statuses[200] >= CONCURRENCY
            used = [r.headers["authorization"] for r in up.requests]
            assert f"Bearer {UPSTREAM_KEY}" in used and f"Bearer {NEW_KEY}" in used
            # well after the reload interval (0.1 s in tests; the margin absorbs
            # queueing on a loaded machine) only the new key goes out
            late = [r for r in up.requests if r.received_at > swapped_at[0] + 1.5]
            assert late and all(r.headers["authorization"] == f"Bearer {NEW_KEY}" for r in late)

            up.valid_keys = {NEW_KEY}  # the old key is revoked at the provider

            async def briefly() -> None:
                await asyncio.sleep(0.3)

            statuses = await hammer(send, briefly, per_worker=1)
            assert statuses == Counter({200: CONCURRENCY})


async def test_client_key_swap_under_200_concurrent_requests(tmp_path: Path) -> None:
    future = "2999-01-01T00:00:00Z"
    async with FakeUpstream() as up, FakeAgent() as agent:
        keys = secret_files("client-one")
        async with run_gateway(tmp_path, up.url, agent_url=agent.url, client_keys=keys) as gw:
            assert gw.client_keys is not None
            current = {"key": "client-one"}
            sent: Counter[str] = Counter()

            async def send(session: aiohttp.ClientSession) -> int:
                sent[current["key"]] += 1
                headers = {"Authorization": f"Bearer {current['key']}"}
                async with session.post(gw.inbound + "/chat", json={"q": 1}, headers=headers) as r:
                    await r.read()
                    return r.status

            async def rotate() -> None:
                await asyncio.sleep(0.3)
                # the operator rotates: new current, old one valid during the grace period
                gw.client_keys.update(secret_files("client-two", "client-one", future))  # type: ignore[union-attr]
                await asyncio.sleep(0.5)
                current["key"] = "client-two"  # callers move to the new key
                await asyncio.sleep(0.5)

            statuses = await hammer(send, rotate)
            assert set(statuses) == {200}, statuses
            assert statuses[200] >= CONCURRENCY
            assert sent["client-one"] > 0 and sent["client-two"] > 0  # both keys were used
            assert all("authorization" not in r.headers for r in agent.requests)
