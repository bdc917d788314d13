"""Budget enforcement end to end: reject before any upstream call, downgrade, alerts, reload."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from tests.e2e.gateway.harness import CHAT, budget_json, post, run_gateway
from tests.fakes.upstream import FakeUpstream

ONE_CALL = (4 * 2.5 + 10 * 10.0) / 1e6  # USD of one CHAT call on gpt-4o


async def test_exhausted_budget_rejects_before_any_upstream_call(tmp_path: Path) -> None:
    budget = budget_json(limits=[{"period": "day", "maxUSD": ONE_CALL * 1.5}])
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1", budget=budget) as gw:
        for expected in (200, 200):  # the second starts under the limit and overshoots it
            status, _, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
            assert status == expected
        calls = len(up.requests)
        status, body, headers = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 429
        assert body["error"]["type"] == "budget_exhausted"
        assert body["error"]["limit"] == {"period": "day", "maxUSD": ONE_CALL * 1.5}
        assert "day limit" in body["error"]["message"]
        assert headers["x-should-retry"] == "false"
        assert len(up.requests) == calls  # refused up front
        assert await gw.metric("agent_gateway_budget_rejections_total", period="day") == 1
        # free endpoints still work
        async with aiohttp.ClientSession() as s, s.get(gw.outbound + "/v1/models") as r:
            assert r.status == 200


async def test_alert_thresholds_logged_once(tmp_path: Path) -> None:
    budget = budget_json(
        limits=[{"period": "month", "maxUSD": ONE_CALL * 4}], alertThresholds=[0.5, 0.8]
    )
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1", budget=budget) as gw:
        for _ in range(4):  # spend: 25%, 50%, 75%, 100%
            assert (await post(gw.outbound + "/v1/chat/completions", CHAT))[0] == 200
        await gw.last_log(count=4)
        alerts = [r for r in gw.logs() if r.get("event") == "budget_alert"]
        assert [a["threshold"] for a in alerts] == [0.5, 0.8]
        assert await gw.metric("agent_gateway_budget_alerts_total", period="month") == 2
        spent = await gw.metric("agent_gateway_budget_spent_usd", period="month")
        assert abs(spent - ONE_CALL * 4) < 1e-12


async def test_downgrade_rewrites_the_model(tmp_path: Path) -> None:
    budget = budget_json(
        limits=[{"period": "day", "maxUSD": ONE_CALL / 2}],
        onExhausted="downgrade",
        downgradeModel="gpt-4o-mini",
    )
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1", budget=budget) as gw:
        assert (await post(gw.outbound + "/v1/chat/completions", CHAT))[0] == 200
        status, body, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 200
        assert up.requests[-1].json["model"] == "gpt-4o-mini"
        assert body["model"] == "gpt-4o-mini"
        log = await gw.last_log(count=2)
        assert log["model"] == "gpt-4o-mini" and log["downgraded_from"] == "gpt-4o"
        assert log["cost_usd"] == pytest.approx((4 * 0.15 + 10 * 0.6) / 1e6)
        assert await gw.metric("agent_gateway_budget_downgrades_total") == 1


async def test_budget_file_reload_lifts_the_limit(tmp_path: Path) -> None:
    budget = budget_json(limits=[{"period": "day", "maxUSD": 0.0}])
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1", budget=budget) as gw:
        assert (await post(gw.outbound + "/v1/chat/completions", CHAT))[0] == 429
        assert len(up.requests) == 0
        gw.budget.update({"budget.json": budget_json(limits=[{"period": "day", "maxUSD": 10}])})
        for _ in range(50):  # reload polls every 0.1 s in tests
            await asyncio.sleep(0.1)
            if (await post(gw.outbound + "/v1/chat/completions", CHAT))[0] == 200:
                break
        assert len(up.requests) == 1
        assert any(r.get("event") == "reloaded" and r["volume"] == "budget" for r in gw.logs())


async def test_broken_budget_file_keeps_the_last_good_one(tmp_path: Path) -> None:
    budget = budget_json(limits=[{"period": "day", "maxUSD": 0.0}])
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1", budget=budget) as gw:
        gw.budget.update({"budget.json": "{not json"})
        failed: list[dict[str, object]] = []
        for _ in range(50):
            await asyncio.sleep(0.1)
            failed = [r for r in gw.logs() if r.get("event") == "reload_failed"]
            if failed:
                break
        # the broken file was read and refused (not merely never noticed) ...
        assert failed and failed[0]["volume"] == "budget"
        # ... and the last good limit (0 USD) still holds
        assert (await post(gw.outbound + "/v1/chat/completions", CHAT))[0] == 429
        assert len(up.requests) == 0
