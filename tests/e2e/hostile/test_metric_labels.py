"""Metric label values come from bounded sets: a caller cannot grow /metrics.

Every distinct label value is a new time series held in memory forever and
scraped every 15 s; an agent (or a prompt-injected agent) sending random
model names must not be able to grow them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import aiohttp
import pytest
from tests.e2e.hostile.harness import (
    RecordingAgent,
    RecordingUpstream,
    label_values,
    manifest,
    start_gateway,
)

pytestmark = pytest.mark.timeout(90)
CALLS = 300
MAX_METRICS_BYTES = 200 * 1024


async def spray(
    urls: list[tuple[str, dict[str, object] | None]], headers: dict[str, str]
) -> list[int]:
    """POST (or GET when the body is None) every URL, 20 at a time; the statuses."""
    limit = asyncio.Semaphore(20)
    async with aiohttp.ClientSession() as session:

        async def one(url: str, body: dict[str, object] | None) -> int:
            async with limit:
                method = "GET" if body is None else "POST"
                async with session.request(method, url, json=body, headers=headers) as r:
                    await r.read()
                    return r.status

        return list(await asyncio.gather(*(one(u, b) for u, b in urls)))


async def test_random_model_names_do_not_grow_the_model_label(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    body = manifest(upstream.url + "/v1", 9)
    async with start_gateway(tmp_path, body) as gw:
        priced = set(json.loads(gw.budget.path.joinpath("budget.json").read_text())["prices"])
        calls = []
        for _ in range(CALLS):
            model = f"model-{secrets.token_hex(6)}"
            chat = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            calls.append((gw.outbound_url + "/v1/chat/completions", chat))
        calls += [(gw.outbound_url + "/v1/chat/completions", {"model": "gpt-4o", "messages": []})]
        statuses = await spray(calls, {})
        assert statuses.count(200) == len(calls), sorted(set(statuses))
        text = await gw.metrics()
        models = label_values(text, "model")
        unbounded = models - priced - {"other", "-"}
        assert not unbounded, (
            f"{len(unbounded)} unpriced model label values, e.g. {sorted(unbounded)[:5]}"
        )
        assert "gpt-4o" in models  # priced models keep their own series
        assert len(text.encode()) < MAX_METRICS_BYTES, f"/metrics is {len(text.encode())} bytes"


async def test_random_paths_do_not_grow_the_route_label(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    async with start_gateway(tmp_path, manifest(upstream.url + "/v1", agent.port)) as gw:
        inbound = [
            (f"{gw.inbound_url}/{secrets.token_hex(6)}/x", {"q": "hi"}) for _ in range(CALLS)
        ]
        outbound = [(f"{gw.outbound_url}/v1/{secrets.token_hex(6)}", None) for _ in range(CALLS)]
        await spray(inbound, gw.auth)
        await spray(outbound, {})
        text = await gw.metrics()
        routes = label_values(text, "route")
        assert len(routes) <= 64 + 16, f"{len(routes)} route label values"
        codes = label_values(text, "code")
        assert len(codes) < 20, codes
        assert len(text.encode()) < MAX_METRICS_BYTES, f"/metrics is {len(text.encode())} bytes"
