"""A budget that cannot be loaded means 503, not "no limits".

The gateway starts with a broken budget.json: it is alive but not ready and
refuses billed calls without calling the provider. Once the file is fixed it
becomes ready; a file broken again later leaves the last good budget in
force, still enforced.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.hostile.harness import (
    CHAT,
    JSON,
    MISSING,
    TINY_BUDGET,
    Gateway,
    RecordingUpstream,
    manifest,
    raw_call,
    start_gateway,
)

from agent_operator.builders import budget_configmap

pytestmark = pytest.mark.timeout(60)
CORRUPT: dict[str, Any] = {
    "not-json": '{"limits": [{"period": "day", "maxUSD": 1}',
    "period-year": json.dumps({"limits": [{"period": "year", "maxUSD": 10}]}),
    "max-usd-not-a-number": json.dumps({"limits": [{"period": "day", "maxUSD": "ten"}]}),
    "limits-not-a-list": json.dumps({"limits": {"period": "day", "maxUSD": 1}}),
    "missing": MISSING,
}


async def chat(gw: Gateway) -> Any:
    return await raw_call(
        gw.outbound, "POST", "/v1/chat/completions", JSON, json.dumps(CHAT).encode()
    )


async def wait_probe(gw: Gateway, path: str, status: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        seen = await gw.probe(path)
        if seen == status or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("broken", list(CORRUPT), ids=list(CORRUPT))
async def test_broken_budget_fails_closed_and_the_last_good_one_stays(
    tmp_path: Path, upstream: RecordingUpstream, broken: str
) -> None:
    body = manifest(upstream.url + "/v1", 9, budget=TINY_BUDGET)
    async with start_gateway(tmp_path, body, budget_file=CORRUPT[broken], wait="live") as gw:
        assert await gw.probe("/healthz") == 200
        await asyncio.sleep(0.3)  # a few reload polls: still broken, still not ready
        assert await gw.probe("/readyz") == 503
        r = await chat(gw)
        assert r.status == 503, f"billed call with no budget loaded: {r}"
        error = r.error()
        assert {"message", "type", "code"} <= set(error), error
        assert not upstream.requests, "the provider was called without a budget"

        good = budget_configmap(gw.agd)["data"]["budget.json"]
        gw.budget.update({"budget.json": good})
        assert await wait_probe(gw, "/readyz", 200) == 200, "not ready after the fix"
        r = await chat(gw)
        assert r.status == 200, r  # under the limit before it; over it now
        assert len(upstream.requests) == 1

        failures = len(gw.events("reload_failed"))
        gw.budget.update({"budget.json": "{ broken again"})
        await gw.wait_for_log(lambda _: len(gw.events("reload_failed")) > failures, timeout=3)
        await asyncio.sleep(0.3)
        r = await chat(gw)
        assert r.status == 429 and r.error()["type"] == "budget_exhausted", (
            f"the last good budget is not enforced after a broken reload: {r}"
        )
        assert len(upstream.requests) == 1
