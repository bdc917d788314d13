"""The prompt guard fails closed on the inbound door.

In block mode an attack is found wherever an agent framework would read it
(a JSON body mislabelled text/plain or unlabelled, a form, plain text, the
query string), and a body the guard cannot read is refused (400
`unreadable_body`, 415 for binary) rather than forwarded unscanned. In flag
mode the same bodies are forwarded and counted. A user-supplied pattern with
catastrophic backtracking cannot stall the gateway.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from tests.e2e.hostile.harness import (
    ATTACK,
    JSON,
    RawResponse,
    RecordingAgent,
    RecordingUpstream,
    manifest,
    raw_call,
    start_gateway,
)

pytestmark = pytest.mark.timeout(60)
ATTACK_JSON = json.dumps({"messages": [{"role": "user", "content": ATTACK}]}).encode()
SMUGGLED = [
    ("json-as-text-plain", "POST", "/chat", {"Content-Type": "text/plain"}, ATTACK_JSON),
    ("json-untyped", "POST", "/chat", {}, ATTACK_JSON),
    (
        "form-urlencoded",
        "POST",
        "/chat",
        {"Content-Type": "application/x-www-form-urlencoded"},
        urlencode({"q": ATTACK}).encode(),
    ),
    ("plain-text", "POST", "/chat", {"Content-Type": "text/plain; charset=utf-8"}, ATTACK.encode()),
    ("query-string", "GET", "/chat?" + urlencode({"q": ATTACK}), {}, b""),
    ("query-string-post", "POST", "/chat?" + urlencode({"q": ATTACK}), JSON, b"{}"),
]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# (case, body, words of which the error message must contain one: it names the cause)
UNREADABLE = [
    (
        "invalid-utf8",
        b'{"messages": [{"content": "hi \xff\xfe there"}]}',
        ("utf-8", "utf8", "unicode", "decode"),
    ),
    ("number-10000-digits", b'{"n": ' + b"7" * 10_000 + b"}", ("digit", "number", "integer")),
    (
        "trailing-garbage",
        b'{"messages": []} and then some',
        ("extra", "trailing", "garbage", "after"),
    ),
    ("nested-100000", nested(100_000), ("deep", "depth", "nest")),
    ("nested-65", nested(65), ("deep", "depth", "nest")),
]
BINARY = [
    ("octet-stream", "application/octet-stream", b"\x00\x01\xff\xfe" + ATTACK.encode()),
    ("png", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd" + ATTACK.encode()),
]


def guard_body(upstream: RecordingUpstream, agent: RecordingAgent, mode: str) -> dict[str, object]:
    return manifest(upstream.url + "/v1", agent.port, guard=mode)


async def test_attack_is_blocked_however_it_is_labelled(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    async with start_gateway(tmp_path, guard_body(upstream, agent, "block")) as gw:
        wrong = []
        for case, method, target, headers, body in SMUGGLED:
            r = await raw_call(gw.inbound, method, target, {**gw.auth, **headers}, body)
            if r.status != 400 or r.error().get("type") != "prompt_guard_blocked":
                wrong.append(f"{case}: {r}")
        assert not agent.requests, f"forwarded: {[(r.method, r.path) for r in agent.requests]}"
        assert not wrong, "not blocked:\n" + "\n".join(wrong)
        # a benign body in the same shapes still passes
        r = await raw_call(gw.inbound, "POST", "/chat?q=hello", {**gw.auth, **JSON}, b'{"q": "hi"}')
        assert r.status == 200, r


async def test_unreadable_bodies_are_refused_in_block_mode(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    async with start_gateway(tmp_path, guard_body(upstream, agent, "block")) as gw:
        wrong = []
        for case, body, words in UNREADABLE:
            r = await raw_call(gw.inbound, "POST", "/chat", {**gw.auth, **JSON}, body)
            error = r.error() if r.status == 400 else {}
            message = str(error.get("message", "")).lower()
            if error.get("type") != "unreadable_body" or not any(w in message for w in words):
                wrong.append(f"{case}: {r}")
        for case, ctype, body in BINARY:
            r = await raw_call(
                gw.inbound, "POST", "/upload", {**gw.auth, "Content-Type": ctype}, body
            )
            if r.status != 415:
                wrong.append(f"{case}: {r}")
        assert gw.process.poll() is None, "the gateway died"
        assert not agent.requests, f"forwarded unscanned: {[r.body[:40] for r in agent.requests]}"
        assert not wrong, "not refused as unreadable:\n" + "\n".join(wrong)


async def test_nesting_up_to_the_depth_limit_is_fine(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    async with start_gateway(tmp_path, guard_body(upstream, agent, "block")) as gw:
        deep = b'{"a": ' * 63 + b'"hello"' + b"}" * 63  # 63 objects and the string: depth 64
        for body in (nested(64), deep):
            r = await raw_call(gw.inbound, "POST", "/chat", {**gw.auth, **JSON}, body)
            assert r.status == 200, r
        assert [r.body for r in agent.requests] == [nested(64), deep]
        r = await raw_call(gw.inbound, "POST", "/chat", {**gw.auth, **JSON}, nested(65))
        assert r.status == 400, r
        assert len(agent.requests) == 2


async def test_unreadable_bodies_are_forwarded_and_counted_in_flag_mode(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    async with start_gateway(tmp_path, guard_body(upstream, agent, "flag")) as gw:
        wrong = []
        for case, body, _ in UNREADABLE:
            r = await raw_call(gw.inbound, "POST", "/chat", {**gw.auth, **JSON}, body)
            if r.status != 200:
                wrong.append(f"{case}: {r}")
        for case, ctype, body in BINARY:
            r = await raw_call(
                gw.inbound, "POST", "/upload", {**gw.auth, "Content-Type": ctype}, body
            )
            if r.status != 200:
                wrong.append(f"{case}: {r}")
        assert not wrong, "not forwarded in flag mode:\n" + "\n".join(wrong)
        assert [r.body for r in agent.requests] == [b for _, b, _ in UNREADABLE] + [
            b for _, _, b in BINARY
        ], "bodies must reach the agent byte for byte"
        counted = await gw.metric(
            "agent_gateway_prompt_guard_detections_total", mode="flag", rule="unreadable"
        )
        detections = [
            line
            for line in (await gw.metrics()).splitlines()
            if line.startswith("agent_gateway_prompt_guard_detections_total")
        ]
        # the binary bodies went unscanned too: counted alike
        assert counted == len(UNREADABLE) + len(BINARY), detections


async def test_catastrophic_extra_pattern_cannot_stall_the_gateway(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    body = manifest(upstream.url + "/v1", agent.port, guard="block", extra_patterns=["(a+)+$"])
    async with start_gateway(tmp_path, body) as gw:
        assert "(a+)+$" in gw.command
        payload = json.dumps({"input": "a" * 50_000 + "b"}).encode()
        started = time.monotonic()
        scan = asyncio.create_task(
            raw_call(gw.inbound, "POST", "/chat", {**gw.auth, **JSON}, payload, timeout=8)
        )
        await asyncio.sleep(0.1)
        slow: list[RawResponse] = []
        while not scan.done() and time.monotonic() - started < 6:
            r = await raw_call(gw.outbound, "GET", "/v1/models", timeout=1.0)
            if r.status != 200 or r.seconds > 1.0:
                slow.append(r)
            await asyncio.sleep(0.1)
        r = await scan
        assert r.status is not None, (
            f"no answer within {r.seconds:.1f} s: catastrophic backtracking"
        )
        assert r.seconds < 5, f"answered after {r.seconds:.1f} s"
        assert r.status < 500, r
        assert not slow, f"the outbound door stalled meanwhile: {[str(s) for s in slow]}"
