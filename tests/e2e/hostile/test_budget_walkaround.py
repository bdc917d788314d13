"""The budget cannot be walked around through the outbound door.

A provider normalises paths the gateway may not (`//`, `/./`, `;param`,
percent-encoding), so a spelling the gateway fails to recognise as billed
would be a free call. Endpoints that cost money but carry no token usage
(images, audio, batches, ...) cannot be metered and are refused unless the
AgentDeployment allows them by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.e2e.hostile.harness import (
    CHAT,
    JSON,
    MESSAGES,
    TINY_BUDGET,
    RawResponse,
    RecordingUpstream,
    manifest,
    raw_call,
    start_gateway,
)

pytestmark = pytest.mark.timeout(60)
CHAT_SPELLINGS = [
    "/v1/chat/completions/",
    "//v1/chat/completions",
    "/v1//chat/completions",
    "/v1/chat//completions",
    "/v1/./chat/completions",
    "/v1/chat/./completions",
    "/v1/chat/completions/.",
    "/v1/x/../chat/completions",
    "/v1/chat/completions;x=1",
    "/v1/chat;x=1/completions",
    "/v1;x/chat/completions",
    "/v1/%63hat/completions",
    "/v1/chat%2Fcompletions",
    "/v1/chat%2fcompletions",
    "/v1/chat/completion%73",
    "/v1/chat/completions%2F",
    "/%76%31/chat/completions",
    "/v1//./chat/%63ompletions/",
    "/v1/x/../chat%2Fcompletions;p/",
    "/v1/chat/completions?x=1",
]
UNMETERED_OPENAI = [
    ("/v1/images/generations", "images"),
    ("/v1/audio/speech", "audio"),
    ("/v1/batches", "batches"),
    ("/v1/realtime/client_secrets", "realtime"),
    ("/v1/completions", "completions"),
    ("/v1/fine_tuning/jobs", "fine-tuning"),
    ("/v1/videos", "videos"),
    ("/v1/threads/runs", "assistants-runs"),
    ("/v1//images/generations/", "images"),
    ("/v1/./images%2Fgenerations", "images"),
    ("/v1/audio/./speech;x", "audio"),
    ("/v1//batches", "batches"),
]
COSTLY_BODY = json.dumps({"model": "gpt-image-1", "prompt": "a cat", "input": "hi"}).encode()


def openai_error(r: RawResponse) -> dict[str, object]:
    data = r.json()
    assert set(data) == {"error"}, data
    assert {"message", "type", "code"} <= set(data["error"]), data
    return dict(data["error"])


def anthropic_error(r: RawResponse) -> dict[str, object]:
    data = r.json()
    assert data.get("type") == "error" and isinstance(data.get("error"), dict), data
    assert {"message", "type"} <= set(data["error"]), data
    return dict(data["error"])


async def test_exhausted_budget_holds_for_every_spelling_of_chat_completions(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    async with start_gateway(tmp_path, manifest(upstream.url + "/v1", 9, budget=TINY_BUDGET)) as gw:
        paid = await raw_call(
            gw.outbound, "POST", "/v1/chat/completions", JSON, json.dumps(CHAT).encode()
        )
        assert paid.status == 200, paid  # under the limit before it: allowed, and now exhausted
        assert len(upstream.requests) == 1
        wrong = []
        for target in ["/v1/chat/completions", *CHAT_SPELLINGS]:
            r = await raw_call(gw.outbound, "POST", target, JSON, json.dumps(CHAT).encode())
            if r.status != 429 or openai_error(r)["type"] != "budget_exhausted":
                wrong.append(f"{target}: {r}")
        forwarded = upstream.raw_targets[1:]
        assert not forwarded, f"the upstream received (unbilled): {forwarded}"
        assert not wrong, "not refused as over budget:\n" + "\n".join(wrong)


async def test_unmetered_costly_endpoints_are_refused_by_name(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    async with start_gateway(tmp_path, manifest(upstream.url + "/v1", 9)) as gw:
        wrong = []
        for target, name in UNMETERED_OPENAI:
            r = await raw_call(gw.outbound, "POST", target, JSON, COSTLY_BODY)
            if r.status != 403 or name not in str(openai_error(r)["message"]):
                wrong.append(f"{target} ({name}): {r}")
        assert not upstream.raw_targets, f"forwarded: {upstream.raw_targets}"
        assert not wrong, "not refused with 403 naming the endpoint:\n" + "\n".join(wrong)
        # free endpoints still pass
        r = await raw_call(gw.outbound, "GET", "/v1/models")
        assert r.status == 200 and upstream.raw_targets == ["/v1/models"], r
        # metered ones too
        r = await raw_call(
            gw.outbound, "POST", "/v1/chat/completions", JSON, json.dumps(CHAT).encode()
        )
        assert r.status == 200, r


async def test_anthropic_message_batches_are_refused(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    body = manifest(upstream.url, 9, provider="anthropic")
    headers = {**JSON, "anthropic-version": "2023-06-01"}
    batch = json.dumps({"requests": [{"custom_id": "1", "params": MESSAGES}]}).encode()
    async with start_gateway(tmp_path, body) as gw:
        wrong = []
        for target in ("/v1/messages/batches", "/v1/messages/batches/", "/v1//messages/batches"):
            r = await raw_call(gw.outbound, "POST", target, headers, batch)
            if r.status != 403 or "batches" not in str(anthropic_error(r)["message"]):
                wrong.append(f"{target}: {r}")
        assert not upstream.raw_targets, f"forwarded: {upstream.raw_targets}"
        assert not wrong, "\n".join(wrong)
        count = json.dumps({k: MESSAGES[k] for k in ("model", "messages")}).encode()
        r = await raw_call(gw.outbound, "POST", "/v1/messages/count_tokens", headers, count)
        assert r.status == 200 and r.json() == {"input_tokens": 4}, r
        r = await raw_call(gw.outbound, "GET", "/v1/models", headers)
        assert r.status == 200, r
        r = await raw_call(
            gw.outbound, "POST", "/v1/messages", headers, json.dumps(MESSAGES).encode()
        )
        assert r.status == 200, r


async def test_allowed_unmetered_endpoint_is_forwarded(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    body = manifest(upstream.url + "/v1", 9, gateway={"allowUnmeteredEndpoints": ["images"]})
    async with start_gateway(tmp_path, body) as gw:
        assert "--allow-unmetered" in gw.command
        assert gw.command[gw.command.index("--allow-unmetered") + 1] == "images"
        r = await raw_call(gw.outbound, "POST", "/v1/images/generations", JSON, COSTLY_BODY)
        # forwarded: the fake provider has no images endpoint and says 404 itself
        assert upstream.raw_targets == ["/v1/images/generations"], r
        assert r.status == 404, r
        assert upstream.requests[0].headers["authorization"].startswith("Bearer sk_")
        r = await raw_call(gw.outbound, "POST", "/v1/audio/speech", JSON, COSTLY_BODY)
        assert r.status == 403 and "audio" in str(openai_error(r)["message"]), r
        assert len(upstream.raw_targets) == 1


TRAVERSAL_AND_BAD_ENCODING = [
    "/v1/../../x",
    "/v1/../../v1/chat/completions",
    "/../v1/chat/completions",
    "/v1/%2e%2e/%2e%2e/x",
    "/v1/chat/%ff%fe",
    "/v1/%ff%fe/completions",
    "/v1/chat/%zz",
    "/v1/%zzchat/completions",
    "/v1/chat/completions%",
]


async def test_traversal_and_broken_percent_encoding_are_400(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    async with start_gateway(tmp_path, manifest(upstream.url + "/v1", 9)) as gw:
        wrong = []
        for target in TRAVERSAL_AND_BAD_ENCODING:
            r = await raw_call(gw.outbound, "POST", target, JSON, json.dumps(CHAT).encode())
            if r.status != 400:
                wrong.append(f"{target}: {r}")
        assert not upstream.raw_targets, f"forwarded: {upstream.raw_targets}"
        assert not wrong, "not refused with 400:\n" + "\n".join(wrong)
