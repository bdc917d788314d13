"""Outbound door end to end: the real gateway process against the fake provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.e2e.gateway.harness import CHAT, UPSTREAM_KEY, post, run_gateway, stream
from tests.fakes.upstream import FakeUpstream


async def test_chat_injects_key_drops_agent_key_and_charges(tmp_path: Path) -> None:
    async with FakeUpstream() as up:
        up.valid_keys = {UPSTREAM_KEY}
        async with run_gateway(tmp_path, up.url + "/v1") as gw:
            status, body, headers = await post(
                gw.outbound + "/v1/chat/completions",
                CHAT,
                {"Authorization": "Bearer injected-by-gateway", "X-Request-ID": "rid-1"},
            )
            assert status == 200, body
            assert body["usage"]["prompt_tokens"] == 4
            assert headers["X-Request-ID"] == "rid-1"
            seen = up.requests[-1]
            assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
            assert seen.path == "/v1/chat/completions"
            # 4 input x 2.5 + 10 output x 10.0 per 1M tokens
            cost = await gw.metric("agent_gateway_cost_usd_total", model="gpt-4o")
            assert cost == pytest.approx((4 * 2.5 + 10 * 10.0) / 1e6)
            assert (
                await gw.metric("agent_gateway_tokens_total", model="gpt-4o", direction="input")
                == 4
            )
            log = await gw.last_log()
            assert log["request_id"] == "rid-1" and log["status"] == 200
            assert log["input_tokens"] == 4 and log["output_tokens"] == 10
            assert UPSTREAM_KEY not in gw.log_path.read_text()


async def test_stream_asks_for_usage_and_hides_it_from_client(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        status, events = await stream(
            gw.outbound + "/v1/chat/completions", {**CHAT, "stream": True}
        )
        assert status == 200
        assert events[-1] == b"data: [DONE]"
        payloads = [json.loads(e[6:]) for e in events[:-1]]
        assert all(p["choices"] for p in payloads), "usage-only chunk must be stripped"
        assert up.requests[-1].json["stream_options"] == {"include_usage": True}
        log = await gw.last_log()
        assert (log["input_tokens"], log["output_tokens"]) == (4, 10)
        assert "usage_estimated" not in log


async def test_stream_client_asked_for_usage_keeps_it(tmp_path: Path) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        status, events = await stream(gw.outbound + "/v1/chat/completions", body)
        assert status == 200
        last = json.loads(events[-2][6:])
        assert last["choices"] == [] and last["usage"]["completion_tokens"] == 10


@pytest.mark.parametrize("streaming", [False, True])
async def test_anthropic_messages(tmp_path: Path, streaming: bool) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "stream": streaming,
        "messages": [{"role": "user", "content": "a b c"}],
    }
    headers = {"x-api-key": "injected-by-gateway", "anthropic-version": "2023-06-01"}
    async with FakeUpstream() as up:
        up.valid_keys = {UPSTREAM_KEY}
        async with run_gateway(tmp_path, up.url, provider="anthropic") as gw:
            async with (
                aiohttp.ClientSession() as s,
                s.post(gw.outbound + "/v1/messages", json=body, headers=headers) as r,
            ):
                assert r.status == 200
                await r.read()
            seen = up.requests[-1]
            assert seen.headers["x-api-key"] == UPSTREAM_KEY
            assert seen.headers["anthropic-version"] == "2023-06-01"
            assert "authorization" not in seen.headers
            log = await gw.last_log()
            assert (log["input_tokens"], log["output_tokens"]) == (3, 10)
            assert log["cost_usd"] == pytest.approx((3 * 3.0 + 10 * 15.0) / 1e6)


async def test_azure_uses_api_key_header(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url, provider="azure-openai") as gw:
        status, _, _ = await post(
            gw.outbound + "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            {"messages": CHAT["messages"]},
            {"api-key": "agent-side"},
        )
        assert status == 200
        seen = up.requests[-1]
        assert seen.headers["api-key"] == UPSTREAM_KEY
        assert seen.query == {"api-version": "2024-10-21"}
        assert (await gw.last_log())["model"] == "gpt-4o"


@pytest.mark.parametrize(
    ("path", "body", "tokens"),
    [
        # legacy completions are refused unless allowed; allowed, they are metered
        ("/v1/completions", {"model": "gpt-4o", "prompt": "x y"}, (2, 10)),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x y z"}, (3, 0)),
        ("/v1/responses", {"model": "gpt-4o", "input": "x"}, (1, 10)),
    ],
)
async def test_other_billed_endpoints(
    tmp_path: Path, path: str, body: dict[str, Any], tokens: tuple[int, int]
) -> None:
    allow = ["--allow-unmetered", "completions"]
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1", args=allow) as gw:
        status, _, _ = await post(gw.outbound + path, body)
        assert status == 200
        log = await gw.last_log()
        assert (log["input_tokens"], log["output_tokens"]) == tokens


async def test_responses_stream_usage(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        status, events = await stream(
            gw.outbound + "/v1/responses", {"model": "gpt-4o", "input": "x y", "stream": True}
        )
        assert status == 200 and any(b"response.completed" in e for e in events)
        log = await gw.last_log()
        assert (log["input_tokens"], log["output_tokens"]) == (2, 10)


async def test_unknown_paths_pass_through_authenticated_unbilled(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        async with aiohttp.ClientSession() as s:
            async with s.get(gw.outbound + "/v1/models") as r:
                assert r.status == 200
                assert "gpt-4o" in {m["id"] for m in (await r.json())["data"]}
            async with s.get(gw.outbound + "/v1/files/abc") as r:
                assert r.status == 404  # the provider's answer, passed through
        assert all(r.headers["authorization"] == f"Bearer {UPSTREAM_KEY}" for r in up.requests)
        assert [r.path for r in up.requests] == ["/v1/models", "/v1/files/abc"]
        assert await gw.metric("agent_gateway_cost_usd_total") == 0


async def test_unknown_model_charged_at_unknown_price(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        status, _, _ = await post(
            gw.outbound + "/v1/chat/completions", {**CHAT, "model": "mystery-1"}
        )
        assert status == 200
        # counted without the model's name: labels come from bounded sets only
        assert await gw.metric("agent_gateway_unknown_model_price_total") == 1
        assert 'model="mystery-1"' not in await gw.metrics()
        assert (await gw.last_log())["cost_usd"] == pytest.approx((4 * 15 + 10 * 60) / 1e6)
        assert any(r.get("event") == "unknown_model_price" for r in gw.logs())


async def test_large_request_body(tmp_path: Path) -> None:
    text = "word " * 600_000  # 3 MB: above aiohttp's 1 MiB default body limit
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        status, _, _ = await post(
            gw.outbound + "/v1/embeddings", {"model": "text-embedding-3-small", "input": text}
        )
        assert status == 200
        assert (await gw.last_log())["input_tokens"] == 600_000


async def test_gzip_request_from_the_agent_reaches_the_provider_intact(tmp_path: Path) -> None:
    import gzip

    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with (
        FakeUpstream() as up,
        run_gateway(tmp_path, up.url + "/v1") as gw,
        aiohttp.ClientSession() as s,
    ):
        data = gzip.compress(json.dumps(CHAT).encode())
        async with s.post(gw.outbound + "/v1/chat/completions", data=data, headers=headers) as r:
            assert r.status == 200, await r.text()
        # the gateway's server decoded the body: it must not arrive labelled gzip
        assert "content-encoding" not in up.requests[-1].headers
        assert (await gw.last_log())["cost_usd"] > 0


async def test_escaped_path_reaches_the_provider_normalised(tmp_path: Path) -> None:
    async with (
        FakeUpstream() as up,
        run_gateway(tmp_path, up.url + "/v1") as gw,
        aiohttp.ClientSession() as s,
    ):
        from yarl import URL

        url = gw.outbound + "/v1/files/file%3Fx%2Fy/content?purpose=a"
        async with s.get(URL(url, encoded=True)) as r:
            await r.read()
        seen = up.requests[-1]
        # decoded once, as metering saw it: %2F is a separator, %3F stays escaped
        # (the fake decodes what it receives, so the escaped ? shows as ?)
        assert seen.path == "/v1/files/file?x/y/content"
        assert seen.query == {"purpose": "a"}
