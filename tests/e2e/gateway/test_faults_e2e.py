"""Retries, Retry-After, timeouts, the circuit breaker and cut streams, end to end."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from pathlib import Path

import aiohttp
import pytest
from tests.e2e.gateway.harness import CHAT, post, run_gateway
from tests.fakes.upstream import FakeUpstream, Fault

COST_ONE_CALL = (4 * 2.5 + 10 * 10.0) / 1e6


async def test_429_retry_after_seconds_is_honoured_and_charged_once(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        up.enqueue(Fault.status(429, retry_after="0.4"))
        started = time.monotonic()
        status, _, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
        elapsed = time.monotonic() - started
        assert status == 200
        assert elapsed >= 0.4  # backoff alone is <= 0.05 s in these tests
        assert len(up.requests) == 2
        log = await gw.last_log()
        assert log["retries"] == 1
        assert log["cost_usd"] == pytest.approx(COST_ONE_CALL)
        assert await gw.metric("agent_gateway_cost_usd_total") == pytest.approx(COST_ONE_CALL)
        assert await gw.metric("agent_gateway_upstream_retries_total", reason="429") == 1


async def test_429_retry_after_http_date(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        when = email.utils.formatdate(time.time() + 2, usegmt=True)
        up.enqueue(Fault.status(429, retry_after=when))
        started = time.monotonic()
        status, _, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 200
        assert time.monotonic() - started >= 0.9  # the date has 1 s resolution


async def test_retry_after_beyond_the_deadline_returns_the_429(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        up.enqueue(Fault.status(429, retry_after="120"))
        started = time.monotonic()
        status, body, headers = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 429 and headers["Retry-After"] == "120"
        assert body["error"]["code"] == "rate_limit_exceeded"  # the provider's own error
        assert time.monotonic() - started < 2
        assert len(up.requests) == 1


async def test_5xx_burst_is_retried(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        up.enqueue(Fault.status(500), Fault.status(503))
        status, _, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 200 and len(up.requests) == 3
        assert (await gw.last_log())["retries"] == 2


async def test_attempts_exhausted_returns_the_last_upstream_error(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        up.enqueue(Fault.status(502), Fault.status(504), Fault.status(503))
        status, _, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 503 and len(up.requests) == 3
        assert await gw.metric("agent_gateway_cost_usd_total") == 0


async def test_connection_reset_is_retried(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        up.enqueue(Fault.reset(), Fault.reset())
        status, _, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 200 and len(up.requests) == 3


async def test_hang_hits_the_total_timeout(tmp_path: Path) -> None:
    args = ["--timeout-seconds", "0.5"]
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1", args=args) as gw:
        up.enqueue(Fault.hang(5))
        started = time.monotonic()
        status, body, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 504 and body["error"]["type"] == "upstream_unreachable"
        assert time.monotonic() - started < 2


async def test_hang_shorter_than_timeout_then_retry_succeeds(tmp_path: Path) -> None:
    args = ["--timeout-seconds", "3"]
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1", args=args) as gw:
        up.enqueue(Fault.status(500), Fault.hang(0.3))
        status, _, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 200 and len(up.requests) == 2


async def test_circuit_breaker_opens_and_answers_503_fast(tmp_path: Path) -> None:
    args = ["--breaker-failure-threshold", "3", "--retry-attempts", "1"]
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1", args=args) as gw:
        up.enqueue(*[Fault.status(500)] * 3)
        for _ in range(3):
            status, _, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
            assert status == 500
        status, body, headers = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 503 and body["error"]["type"] == "circuit_open"
        assert "Retry-After" in headers
        assert len(up.requests) == 3  # the open breaker kept the 4th call local
        assert await gw.metric("agent_gateway_circuit_breaker_state") == 2


async def test_breaker_half_open_probe_closes_it(tmp_path: Path) -> None:
    args = [
        "--breaker-failure-threshold",
        "1",
        "--breaker-open-seconds",
        "1",
        "--retry-attempts",
        "1",
    ]
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1", args=args) as gw:
        up.enqueue(Fault.status(502))
        assert (await post(gw.outbound + "/v1/chat/completions", CHAT))[0] == 502
        assert (await post(gw.outbound + "/v1/chat/completions", CHAT))[0] == 503
        await asyncio.sleep(1.05)  # open time over: the next call is the probe
        assert (await post(gw.outbound + "/v1/chat/completions", CHAT))[0] == 200
        assert await gw.metric("agent_gateway_circuit_breaker_state") == 0


async def test_stream_cut_midway_is_charged_for_what_was_delivered(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        up.enqueue(Fault.cut_stream(after_chunks=4))
        received = b""
        async with (
            aiohttp.ClientSession() as s,
            s.post(gw.outbound + "/v1/chat/completions", json={**CHAT, "stream": True}) as r,
        ):
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                async for chunk in r.content.iter_any():
                    received += chunk
        assert b"[DONE]" not in received
        assert len(up.requests) == 1  # never retried once the stream started
        log = await gw.last_log()
        assert log["usage_estimated"] is True
        assert log["usage_estimate_reason"] == "stream_cut"
        assert log["input_tokens"] > 0
        # the chunks delivered hold a few words: a handful of tokens, not the full 10
        assert 0 < log["output_tokens"] < 10
        assert await gw.metric("agent_gateway_usage_estimated_total", model="gpt-4o") == 1


async def test_missing_usage_chunk_is_estimated(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        up.enqueue(Fault.no_usage())
        async with (
            aiohttp.ClientSession() as s,
            s.post(gw.outbound + "/v1/chat/completions", json={**CHAT, "stream": True}) as r,
        ):
            body = await r.read()
        assert r.status == 200 and body.rstrip().endswith(b"data: [DONE]")
        log = await gw.last_log()
        assert log["usage_estimated"] is True
        assert log["usage_estimate_reason"] == "usage_missing"
        text = "Hello from the fake upstream model with tokens to count"
        assert log["output_tokens"] == (len(text) + 3) // 4
        assert log["cost_usd"] > 0


async def test_non_stream_cut_body_is_retried(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        up.enqueue(Fault.cut_stream(after_chunks=0))
        status, body, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 200 and json.dumps(body)
        assert len(up.requests) == 2


async def test_missing_usage_in_a_plain_answer_charges_its_output(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        up.enqueue(Fault.no_usage())
        status, _, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
        assert status == 200
        log = await gw.last_log()
        assert log["usage_estimated"] is True
        assert log["usage_estimate_reason"] == "usage_missing"
        text = "Hello from the fake upstream model with tokens to count"
        # output was charged as 0 tokens before: the answer's text was never counted
        assert log["output_tokens"] == (len(text) + 3) // 4
        assert log["cost_usd"] > 0
