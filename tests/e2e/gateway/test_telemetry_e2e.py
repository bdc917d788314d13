"""Spans over OTLP/HTTP with the GenAI attributes, metrics and log hygiene."""

from __future__ import annotations

import asyncio
import gzip
import socket
from pathlib import Path
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.e2e.gateway.harness import CHAT, UPSTREAM_KEY, post, run_gateway
from tests.fakes.upstream import FakeUpstream, Fault


class FakeCollector:
    """Accepts OTLP/HTTP protobuf trace exports and keeps the spans' attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeCollector:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        export = ExportTraceServiceRequest.FromString(raw)
        for resource_spans in export.resource_spans:
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attrs: dict[str, Any] = {"name": span.name}
                    for kv in span.attributes:
                        value = kv.value
                        attrs[kv.key] = (
                            value.string_value
                            if value.HasField("string_value")
                            else value.int_value
                        )
                    self.spans.append(attrs)
        return web.Response(status=200)


async def test_spans_carry_genai_attributes(tmp_path: Path) -> None:
    async with FakeUpstream() as up, FakeCollector() as collector:
        async with run_gateway(
            tmp_path,
            up.url + "/v1",
            args=["--otlp-endpoint", collector.url],
            env={"OTEL_BSP_SCHEDULE_DELAY": "50"},
        ) as gw:
            status, _, _ = await post(gw.outbound + "/v1/chat/completions", CHAT)
            assert status == 200
        assert gw.process.returncode == 0  # clean shutdown on SIGTERM
        # the gateway flushed its spans on SIGTERM
        assert len(collector.spans) == 1
        span = collector.spans[0]
        assert span["name"] == "chat gpt-4o"
        assert span["gen_ai.provider.name"] == "openai"
        assert span["gen_ai.operation.name"] == "chat"
        assert span["gen_ai.request.model"] == "gpt-4o"
        assert span["gen_ai.response.model"] == "gpt-4o"
        assert span["gen_ai.usage.input_tokens"] == 4
        assert span["gen_ai.usage.output_tokens"] == 10
        assert span["server.address"] == "127.0.0.1"  # a host, not the whole base URL
        assert UPSTREAM_KEY not in repr(collector.spans)


async def test_no_otlp_endpoint_means_opentelemetry_never_loaded(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        assert (await post(gw.outbound + "/v1/chat/completions", CHAT))[0] == 200
        modules = Path(f"/proc/{gw.process.pid}/maps").read_text()
        assert "opentelemetry" not in modules and "google/protobuf" not in modules


async def test_metrics_families_and_no_key_anywhere(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        assert (await post(gw.outbound + "/v1/chat/completions", CHAT))[0] == 200
        await gw.last_log()
        text = await gw.metrics()
        for family in (
            "agent_gateway_requests_total",
            "agent_gateway_request_duration_seconds_bucket",
            "agent_gateway_inflight_requests",
            "agent_gateway_outbound_inflight_requests",
            "agent_gateway_circuit_breaker_state",
            "agent_gateway_tokens_total",
            "agent_gateway_cost_usd_total",
        ):
            assert family in text
        assert 'code="200"' in text and 'model="gpt-4o"' in text
        assert UPSTREAM_KEY not in text
        assert UPSTREAM_KEY not in gw.log_path.read_text()
        log = await gw.last_log()
        for field in (
            "request_id",
            "model",
            "status",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "duration_ms",
            "retries",
        ):
            assert field in log


async def test_outbound_inflight_has_its_own_gauge(tmp_path: Path) -> None:
    async with FakeUpstream() as up, run_gateway(tmp_path, up.url + "/v1") as gw:
        up.enqueue(Fault.hang(1.5))
        task = asyncio.create_task(post(gw.outbound + "/v1/chat/completions", CHAT))
        seen = 0.0
        for _ in range(50):  # bounded: 1 s
            await asyncio.sleep(0.02)
            seen = await gw.metric("agent_gateway_outbound_inflight_requests")
            if seen == 1:
                break
        assert seen == 1
        assert await gw.metric("agent_gateway_inflight_requests") == 0  # inbound only
        assert (await task)[0] == 200
        assert await gw.metric("agent_gateway_outbound_inflight_requests") == 0
