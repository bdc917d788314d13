"""Memory per request is bounded: one request cannot take the pod down.

Bodies over `--max-request-body-bytes` (spec.gateway.maxRequestBodyBytes)
are refused with 413 before they are parsed, whether announced by
Content-Length, chunked, or gzip-compressed (a 60 KB gzip bomb expands to
60 MB of `[{},{},...]`, which as Python objects would be gigabytes). The
gateway's RSS is sampled from /proc throughout (RssWatch kills it above a
hard ceiling, so a failing run does not take the shared machine down too).
A 413 is an honest 413 in the log and the metrics.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from tests.e2e.hostile.harness import (
    CHAT,
    JSON,
    RSS_LIMIT_MB,
    RawResponse,
    RecordingUpstream,
    RssWatch,
    SinkAgent,
    exchange,
    gzip_bomb,
    http_request,
    manifest,
    raw_call,
    start_gateway,
)

pytestmark = pytest.mark.timeout(90)
GZIP_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
MIB = 1 << 20


def json_of_size(size: int) -> bytes:
    """A benign JSON body of exactly `size` bytes."""
    head, tail = b'{"input": "', b'"}'
    words = b"hello world " * (size // 12 + 1)
    return head + words[: size - len(head) - len(tail)] + tail


def chunked(body: bytes, piece: int = 64 * 1024) -> bytes:
    out = [
        b"%x\r\n%s\r\n" % (len(body[i : i + piece]), body[i : i + piece])
        for i in range(0, len(body), piece)
    ]
    return b"".join(out) + b"0\r\n\r\n"


async def send_chunked(
    addr: tuple[str, int], target: str, headers: dict[str, str], body: bytes
) -> RawResponse:
    head = {**headers, "Transfer-Encoding": "chunked"}
    return await exchange(addr, http_request("POST", target, head, chunked(body)), timeout=15)


async def test_oversized_bodies_are_413_logged_and_counted_as_413(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    async with SinkAgent() as agent:
        body = manifest(upstream.url + "/v1", agent.port, gateway={"maxRequestBodyBytes": MIB})
        async with start_gateway(tmp_path, body) as gw:
            flag = gw.command.index("--max-request-body-bytes")
            assert gw.command[flag + 1] == str(MIB), gw.command
            big = json_of_size(MIB + MIB // 2)
            inbound = {**gw.auth, **JSON}
            # the outbound door has its own, larger cap (the agent's calls carry
            # images); a declared 64 MiB is past any cap, refused before it is read
            huge = (
                http_request(
                    "POST", "/v1/chat/completions", {**JSON, "Content-Length": str(64 * MIB + 1)}
                )
                + b'{"model": "gpt-4o"'
            )
            answers = {
                "inbound content-length": await raw_call(
                    gw.inbound, "POST", "/upload", inbound, big, timeout=15
                ),
                "inbound chunked": await send_chunked(gw.inbound, "/upload", inbound, big),
                "outbound content-length": await exchange(gw.outbound, huge, timeout=5),
            }
            wrong = [f"{k}: {r}" for k, r in answers.items() if r.status != 413]
            assert not wrong, "not refused with 413:\n" + "\n".join(wrong)
            for r in answers.values():
                assert "error" in r.json(), r  # the provider's JSON error shape
            assert agent.requests == 0 and not upstream.requests, "an oversized body was forwarded"
            # under the limit still passes
            fits = json_of_size(MIB // 2)
            r = await raw_call(gw.inbound, "POST", "/upload", inbound, fits)
            assert r.status == 200 and r.json() == {"bytes": len(fits)}, r
            # honest in the log and the metrics
            await gw.wait_for_log(lambda _: len(gw.request_logs("outbound")) >= 1)
            for door, refused in (("inbound", 2), ("outbound", 1)):
                logged = [line["status"] for line in gw.request_logs(door)]
                assert logged.count(413) == refused, f"{door} request log statuses: {logged}"
                counted = await gw.metric("agent_gateway_requests_total", door=door, code="413")
                assert counted == refused, f"{door}: {counted} requests counted with code 413"
                assert await gw.metric("agent_gateway_requests_total", door=door, code="500") == 0


async def test_gzip_bomb_on_the_inbound_door_is_refused_with_bounded_memory(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    async with SinkAgent() as agent:
        body = manifest(upstream.url + "/v1", agent.port)
        async with start_gateway(tmp_path, body) as gw, RssWatch(gw.process) as rss:
            headers = {**gw.auth, **GZIP_JSON}
            r = await raw_call(gw.inbound, "POST", "/chat", headers, gzip_bomb(), timeout=20)
            await asyncio.sleep(0.3)
        assert not rss.killed, f"RSS passed {rss.ceiling_mb:.0f} MB: killed"
        assert r.status in (400, 413), r
        assert rss.peak < RSS_LIMIT_MB, f"RSS peak {rss.peak:.0f} MB (before {rss.before:.0f} MB)"
        assert agent.requests == 0, "the bomb was forwarded"


async def test_gzip_bomb_with_the_guard_off_is_cut_before_it_reaches_the_agent(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    """Guard off: bodies are streamed unread, but cut at maxRequestBodyBytes (decoded),
    so a bomb neither grows the gateway nor floods the agent with 60 MB."""
    async with SinkAgent() as agent:
        body = manifest(upstream.url + "/v1", agent.port, guard="off")
        async with start_gateway(tmp_path, body) as gw, RssWatch(gw.process) as rss:
            headers = {**gw.auth, **GZIP_JSON}
            r = await raw_call(gw.inbound, "POST", "/chat", headers, gzip_bomb(), timeout=20)
            await asyncio.sleep(0.3)
            # a body under the limit still streams through whole
            fits = json_of_size(MIB)
            ok = await raw_call(gw.inbound, "POST", "/upload", {**gw.auth, **JSON}, fits)
            await gw.wait_for_log(lambda _: len(gw.request_logs("inbound")) >= 2)
            logged = [line["status"] for line in gw.request_logs("inbound")]
        assert not rss.killed, f"RSS passed {rss.ceiling_mb:.0f} MB: killed"
        assert r.status == 413, r
        assert ok.status == 200 and ok.json() == {"bytes": len(fits)}, ok
        assert logged.count(413) == 1, logged
        limit = 4 * MIB  # the default maxRequestBodyBytes
        assert agent.bytes <= limit + len(fits) + 1024 * 1024, agent.bytes  # plus chunks in flight
        assert rss.peak < RSS_LIMIT_MB, f"RSS peak {rss.peak:.0f} MB (before {rss.before:.0f} MB)"


async def test_gzip_bomb_on_the_outbound_door_is_refused_with_bounded_memory(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    async with (
        start_gateway(tmp_path, manifest(upstream.url + "/v1", 9)) as gw,
        RssWatch(gw.process) as rss,
    ):
        r = await raw_call(
            gw.outbound, "POST", "/v1/chat/completions", GZIP_JSON, gzip_bomb(), timeout=20
        )
        await asyncio.sleep(0.3)
        ok = await raw_call(
            gw.outbound, "POST", "/v1/chat/completions", JSON, json.dumps(CHAT).encode()
        )
    assert not rss.killed, f"RSS passed {rss.ceiling_mb:.0f} MB: killed"
    assert r.status == 413, r
    assert rss.peak < RSS_LIMIT_MB, f"RSS peak {rss.peak:.0f} MB (before {rss.before:.0f} MB)"
    assert ok.status == 200, ok
    assert len(upstream.requests) == 1, "the bomb was forwarded"


async def test_concurrent_gzip_bombs_leave_benign_requests_served(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    """20 clients post gzip bombs for 5 s while 2 send small benign requests."""
    bomb = gzip_bomb()
    seconds = 5.0
    async with SinkAgent() as agent:
        body = manifest(upstream.url + "/v1", agent.port)
        async with start_gateway(tmp_path, body) as gw, RssWatch(gw.process) as rss:
            stop_at = time.monotonic() + seconds
            bomb_answers: list[int | None] = []
            benign: list[RawResponse] = []

            async def bomber() -> None:
                while time.monotonic() < stop_at and not rss.killed:
                    r = await raw_call(
                        gw.inbound, "POST", "/chat", {**gw.auth, **GZIP_JSON}, bomb, timeout=20
                    )
                    bomb_answers.append(r.status)

            async def caller() -> None:
                while time.monotonic() < stop_at and not rss.killed:
                    r = await raw_call(
                        gw.inbound, "POST", "/chat", {**gw.auth, **JSON}, b'{"q": "hi"}', timeout=20
                    )
                    benign.append(r)
                    await asyncio.sleep(0.05)

            await asyncio.gather(*(bomber() for _ in range(20)), *(caller() for _ in range(2)))
    assert not rss.killed, f"RSS passed {rss.ceiling_mb:.0f} MB: killed"
    failed = [str(r) for r in benign if r.status != 200]
    assert benign and not failed, (
        f"{len(failed)} of {len(benign)} benign requests failed: {failed[:5]}"
    )
    assert bomb_answers and all(s in (400, 413) for s in bomb_answers), sorted(
        set(map(str, bomb_answers))
    )
    assert rss.peak < RSS_LIMIT_MB, f"RSS peak {rss.peak:.0f} MB (before {rss.before:.0f} MB)"
    slowest = max(r.seconds for r in benign)
    assert slowest < 5, f"a benign request took {slowest:.1f} s"


async def test_a_client_gone_mid_body_is_recorded_as_499_never_500(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    async with (
        SinkAgent() as agent,
        start_gateway(tmp_path, manifest(upstream.url + "/v1", agent.port)) as gw,
    ):
        for door, target, headers in (
            ("inbound", "/upload", {**gw.auth, **JSON}),
            ("outbound", "/v1/chat/completions", JSON),
        ):
            host, port = gw.inbound if door == "inbound" else gw.outbound
            _, writer = await asyncio.open_connection(host, port)
            head = {**headers, "Content-Length": str(MIB)}
            writer.write(http_request("POST", target, head, b'{"input": "half of it'))
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()  # gone before the body ended
            await gw.wait_for_log(lambda _, d=door: len(gw.request_logs(d)) >= 1)
            [line] = gw.request_logs(door)
            assert line["status"] == 499, line
            assert await gw.metric("agent_gateway_requests_total", door=door, code="499") == 1
            assert await gw.metric("agent_gateway_requests_total", door=door, code="500") == 0
        assert agent.requests == 0 and not upstream.requests
