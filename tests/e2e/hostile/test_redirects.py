"""The provider key goes only to the configured upstream origin.

Redirects from the upstream are handed back to the agent, never followed (a
307/308 follow would resend the body with the key to wherever the Location
points); a request target naming another host (absolute-form, or a path
starting with `//host:port/`) still goes to the configured upstream.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tests.e2e.hostile.harness import (
    CHAT,
    JSON,
    MESSAGES,
    UPSTREAM_KEY,
    RecordingUpstream,
    Thief,
    free_port,
    manifest,
    raw_call,
    start_gateway,
)

pytestmark = pytest.mark.timeout(60)
REDIRECTS = (301, 302, 303, 307, 308)


def presented_key(headers: dict[str, str]) -> str:
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_upstream_redirects_go_back_to_the_agent_unfollowed(
    tmp_path: Path, upstream: RecordingUpstream, thief: Thief, provider: str
) -> None:
    base = upstream.url + "/v1" if provider == "openai" else upstream.url
    path, payload = (
        ("/v1/chat/completions", CHAT) if provider == "openai" else ("/v1/messages", MESSAGES)
    )
    async with start_gateway(tmp_path, manifest(base, free_port(), provider=provider)) as gw:
        wrong = []
        cases = [("POST", path, code) for code in REDIRECTS] + [("GET", "/v1/models", 302)]
        for method, target, code in cases:
            location = f"{thief.origin}/v1/stolen/{code}"
            upstream.redirect = (code, location)
            before = len(upstream.requests)
            body = json.dumps(payload).encode() if method == "POST" else b""
            r = await raw_call(gw.outbound, method, target, JSON, body)
            if r.status != code or r.headers.get("location") != location:
                wrong.append(f"{method} {target} upstream {code}: agent got {r} {r.headers}")
            if len(upstream.requests) != before + 1:  # a 3xx is an answer, not a retry reason
                wrong.append(f"{code}: upstream saw {len(upstream.requests) - before} attempts")
        await asyncio.sleep(0.3)  # a follow-up request would have arrived by now
        assert thief.connections == 0, f"the gateway followed a redirect: {bytes(thief.received)!r}"
        assert not wrong, "\n".join(wrong)
        assert all(presented_key(r.headers) == UPSTREAM_KEY for r in upstream.requests)


async def test_request_target_naming_another_host_stays_on_the_upstream(
    tmp_path: Path, upstream: RecordingUpstream, thief: Thief
) -> None:
    thief_host = f"127.0.0.1:{thief.port}"
    cases = [
        ("POST", f"http://{thief_host}/v1/chat/completions", {}),  # absolute-form
        ("GET", f"http://{thief_host}/v1/models", {}),
        ("POST", f"//{thief_host}/v1/chat/completions", {}),  # network-path reference
        ("GET", f"//{thief_host}/v1/models", {}),
        ("POST", "/v1/chat/completions", {"Host": thief_host}),  # Host must not route
        ("POST", f"/v1/..//{thief_host}/v1/chat/completions", {}),
    ]
    async with start_gateway(tmp_path, manifest(upstream.url + "/v1", free_port())) as gw:
        answers = []
        for method, target, extra in cases:
            body = json.dumps(CHAT).encode() if method == "POST" else b""
            r = await raw_call(gw.outbound, method, target, {**JSON, **extra}, body)
            answers.append((f"{method} {target} {extra}", r))
        await asyncio.sleep(0.3)
        report = "\n".join(f"{label}: {r}" for label, r in answers)
        assert thief.connections == 0, f"a request reached the thief:\n{report}"
        # refused (4xx) or forwarded to the configured upstream; never a crash
        assert all(r.status is not None and r.status < 500 for _, r in answers), report
        assert all(presented_key(r.headers) == UPSTREAM_KEY for r in upstream.requests)
