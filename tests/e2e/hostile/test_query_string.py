"""The query string is forwarded byte for byte on both doors.

Decoding and re-encoding changes meaning (`%2F` vs `/`, `+` vs `%20`,
`%2541` vs `%41`) and can change what the agent or the provider reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.e2e.hostile.harness import (
    CHAT,
    JSON,
    RecordingAgent,
    RecordingUpstream,
    manifest,
    raw_call,
    start_gateway,
)

pytestmark = pytest.mark.timeout(60)
QUERIES = [
    "a=%20b&c=%2541&d=x+y&e=%2F",
    "x=%E2%82%AC&y=%e2%82%ac&z=a%3Db&&w",
    "api-version=2024-06-01&q=%3F%23%26",
]


async def test_query_reaches_the_agent_byte_for_byte(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent
) -> None:
    async with start_gateway(tmp_path, manifest(upstream.url + "/v1", agent.port)) as gw:
        for query in QUERIES:
            r = await raw_call(gw.inbound, "GET", "/ask?" + query, gw.auth)
            assert r.status == 200, r
            r = await raw_call(gw.inbound, "POST", "/ask?" + query, {**gw.auth, **JSON}, b"{}")
            assert r.status == 200, r
        expected = [f"/ask?{q}" for q in QUERIES for _ in range(2)]
        assert agent.raw_targets == expected


async def test_query_reaches_the_upstream_byte_for_byte(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    async with start_gateway(tmp_path, manifest(upstream.url + "/v1", 9)) as gw:
        for query in QUERIES:
            target = "/v1/chat/completions?" + query
            r = await raw_call(gw.outbound, "POST", target, JSON, json.dumps(CHAT).encode())
            assert r.status == 200, r
            r = await raw_call(gw.outbound, "GET", "/v1/models?" + query)
            assert r.status == 200, r
        expected = [f"/v1/{path}?{q}" for q in QUERIES for path in ("chat/completions", "models")]
        assert upstream.raw_targets == expected
