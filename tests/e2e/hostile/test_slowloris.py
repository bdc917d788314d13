"""Slow and numerous clients cannot hold a door.

Headers that trickle in are cut after `--header-timeout-seconds`, a body that
trickles in after `--body-timeout-seconds` (each byte arrives well inside any
idle timeout, so only a deadline on the whole catches them), and connections
past `--max-connections` per door are closed at once, with one
`connection_limit` log line rather than one per refused connection. These
flags are not rendered by the operator; the tests shorten their defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.e2e.hostile.harness import (
    CHAT,
    Addr,
    RecordingAgent,
    RecordingUpstream,
    manifest,
    parse_response,
    raw_call,
    start_gateway,
)

pytestmark = pytest.mark.timeout(90)
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
MARGIN = 2.5  # scheduling slack on a busy machine
DRIP = 0.2  # seconds between two bytes


@dataclass
class Slow:
    closed_after: float | None  # seconds from connect to the server's close; None: still open
    answered_after: float | None  # seconds to a complete response; None: none came
    answer: bytes  # whatever the server sent

    @property
    def cut_after(self) -> float | None:
        """When the server stopped the request: answered it or closed the connection."""
        times = [t for t in (self.closed_after, self.answered_after) if t is not None]
        return min(times) if times else None


async def slow_client(
    addr: Addr, first: bytes, drip: bytes, limit: float, every: float = DRIP
) -> Slow:
    """Send `first`, then one byte of `drip` (cycled) every `every` seconds until
    the server closes the connection or `limit` seconds pass; the drip stops
    once a complete response has come."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(*addr)
    except OSError:
        return Slow(0.0, None, b"")
    answer = b""
    answered: float | None = None
    try:
        writer.write(first)
        i = 0
        while time.monotonic() - started < limit:
            try:
                data = await asyncio.wait_for(reader.read(65536), every)
            except TimeoutError:
                data = None
            except (ConnectionError, OSError):
                return Slow(time.monotonic() - started, answered, answer)
            if data == b"":
                return Slow(time.monotonic() - started, answered, answer)
            if data:
                answer += data
                if answered is None and parse_response(answer, complete_only=True):
                    answered = time.monotonic() - started
                continue
            if answered is not None:
                continue  # answered: wait for the close, send nothing more
            try:
                writer.write(drip[i % len(drip) : i % len(drip) + 1])
                await writer.drain()
            except (ConnectionError, OSError):
                return Slow(time.monotonic() - started, answered, answer)
            i += 1
        return Slow(None, answered, answer)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def args(max_connections: int = 1024, header_timeout: float = HEADER_TIMEOUT) -> list[str]:
    return [
        "--header-timeout-seconds",
        str(header_timeout),
        "--body-timeout-seconds",
        str(BODY_TIMEOUT),
        "--max-connections",
        str(max_connections),
    ]


HEAD_START = b"POST /chat HTTP/1.1\r\nHost: gateway\r\n"
HEADER_DRIP = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"


async def test_slow_headers_are_cut_after_the_header_timeout(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    body = manifest(upstream.url + "/v1", agent.port)
    async with start_gateway(tmp_path, body, extra_args=args()) as gw:
        limit = HEADER_TIMEOUT + MARGIN + 2
        clients = [
            slow_client(door, HEAD_START, HEADER_DRIP, limit)
            for door in (gw.inbound, gw.outbound)
            for _ in range(5)
        ]
        pending = asyncio.gather(*clients)
        await asyncio.sleep(0.3)
        ok = await raw_call(
            gw.inbound, "POST", "/chat", {**gw.auth, "Content-Type": "application/json"}, b"{}"
        )
        slow = await pending
        assert ok.status == 200, f"a benign request failed meanwhile: {ok}"
        times = [s.closed_after for s in slow]
        assert all(t is not None for t in times), f"still open after {limit:.1f} s: {times}"
        assert max(t for t in times if t is not None) < HEADER_TIMEOUT + MARGIN, times
        assert len(agent.requests) == 1 and not upstream.requests


async def test_silent_connections_are_closed_after_the_header_timeout(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    """A connection that sends nothing at all is the slowest header there is."""
    body = manifest(upstream.url + "/v1", agent.port)
    async with start_gateway(tmp_path, body, extra_args=args()) as gw:
        limit = HEADER_TIMEOUT + MARGIN + 2
        # the drip never starts: `every` is longer than the whole wait
        clients = [
            slow_client(door, b"", b" ", limit, every=limit + 1)
            for door in (gw.inbound, gw.outbound)
            for _ in range(3)
        ]
        times = [s.closed_after for s in await asyncio.gather(*clients)]
        assert all(t is not None for t in times), f"still open after {limit:.1f} s: {times}"
        assert max(t for t in times if t is not None) < HEADER_TIMEOUT + MARGIN, times


async def test_silent_connections_cannot_hold_the_door(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    """`cap` connections that never send a byte must not lock callers out for good."""
    cap = 20
    body = manifest(upstream.url + "/v1", agent.port)
    async with start_gateway(tmp_path, body, extra_args=args(cap)) as gw:
        silent = [await asyncio.open_connection(*gw.inbound) for _ in range(cap)]
        try:
            await asyncio.sleep(HEADER_TIMEOUT + MARGIN)
            headers = {**gw.auth, "Content-Type": "application/json"}
            r = await raw_call(gw.inbound, "POST", "/chat", headers, b"{}", timeout=3)
            assert r.status == 200, f"{cap} silent connections still hold the door: {r}"
        finally:
            for _, writer in silent:
                writer.close()


@pytest.mark.parametrize("door", ["inbound", "outbound"])
async def test_slow_body_is_cut_after_the_body_timeout(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent, door: str
) -> None:
    async with start_gateway(
        tmp_path, manifest(upstream.url + "/v1", agent.port), extra_args=args()
    ) as gw:
        if door == "inbound":
            addr, auth = gw.inbound, f"Authorization: Bearer {gw.auth['Authorization'][7:]}\r\n"
            target = b"POST /chat HTTP/1.1\r\n"
        else:
            addr, auth, target = gw.outbound, "", b"POST /v1/chat/completions HTTP/1.1\r\n"
        head = (
            target + b"Host: gateway\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n" + auth.encode() + b"\r\n"
        )
        limit = BODY_TIMEOUT + MARGIN + 2
        body = json.dumps({**CHAT, "pad": "x" * 99_000}).encode()
        slow = await slow_client(addr, head, body, limit)
        assert slow.cut_after is not None, f"slow body neither answered nor cut in {limit:.1f} s"
        assert slow.cut_after < BODY_TIMEOUT + MARGIN, slow
        answer = parse_response(slow.answer, complete_only=False)
        assert answer is not None
        assert answer.status in (None, 408), f"cut with {answer}"
        if answer.status == 408:
            assert slow.closed_after is not None and slow.closed_after < BODY_TIMEOUT + MARGIN, (
                f"answered 408 but the connection stayed open: {slow}"
            )
        assert not agent.requests and not upstream.requests


async def test_connections_past_the_cap_are_closed_at_once(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    cap, header_timeout, count = 50, 2.5, 300
    body = manifest(upstream.url + "/v1", agent.port)
    async with start_gateway(tmp_path, body, extra_args=args(cap, header_timeout)) as gw:
        limit = header_timeout + MARGIN + 2
        flood = asyncio.gather(
            *(
                slow_client(gw.inbound, HEAD_START, HEADER_DRIP, limit, every=0.3)
                for _ in range(count)
            )
        )
        await asyncio.sleep(0.5)
        # the other doors are not held by the inbound door's flood
        other = await raw_call(gw.outbound, "GET", "/v1/models", timeout=3)
        health = await gw.probe("/healthz")
        slow = await flood
        times = sorted(s.closed_after if s.closed_after is not None else float("inf") for s in slow)
        at_once = sum(1 for t in times if t < 1.5)
        assert times[-1] < header_timeout + MARGIN, (
            f"open after {limit:.1f} s: {times.count(float('inf'))}"
        )
        assert at_once >= count - cap - 10, f"only {at_once} of {count} closed within 1.5 s"
        assert other.status == 200, f"outbound door blocked by the inbound flood: {other}"
        assert health == 200
        # the door serves again once the slow ones are gone
        deadline, ok = time.monotonic() + 3, None
        while time.monotonic() < deadline:
            ok = await raw_call(
                gw.inbound, "POST", "/chat", {**gw.auth, "Content-Type": "application/json"}, b"{}"
            )
            if ok.status == 200:
                break
            await asyncio.sleep(0.1)
        assert ok is not None and ok.status == 200, ok
        limited = gw.events("connection_limit")
        assert 1 <= len(limited) <= 3, f"{len(limited)} connection_limit log lines"
