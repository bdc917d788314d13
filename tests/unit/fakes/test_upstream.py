"""The fake upstream speaks the providers' real wire formats.

The official `openai` and `anthropic` SDKs parse its answers (streaming and
not): if they accept them, so will the gateway's parsers and real agents.
Faults are checked with a raw aiohttp client, which shows exactly what the
wire carries.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.fakes.upstream import FakeUpstream, Fault

ROOT = Path(__file__).resolve().parents[3]
CHAT: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "one two three"}],
}
TEXT10 = "Hello from the fake upstream model with tokens to count"


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


def openai_client(up: FakeUpstream, key: str = "sk-a", **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=up.url + "/v1", api_key=key, **{"max_retries": 0, **options})


def anthropic_client(up: FakeUpstream, key: str = "sk-a") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=up.url, api_key=key, max_retries=0)


# SDK clients are closed inside the test's loop: an unclosed httpx pool
# otherwise tries to close itself after the loop is gone.
@pytest.fixture
async def oai(up: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(up) as client:
        yield client


@pytest.fixture
async def claude(up: FakeUpstream) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic_client(up) as client:
        yield client


async def post(up: FakeUpstream, path: str, body: Any, **headers: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(up.url + path, json=body, headers=headers) as response,
    ):
        return response.status, await response.read()


def sse_data(raw: bytes) -> list[str]:
    return [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]


# ------------------------------------------------------------------ OpenAI


async def test_chat_completion_parsed_by_openai_sdk(
    up: FakeUpstream, oai: openai.AsyncOpenAI
) -> None:
    result = await oai.chat.completions.create(
        model="gpt-4o-2024-08-06",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
        ],
    )
    assert result.model == "gpt-4o-2024-08-06"
    assert result.object == "chat.completion"
    assert result.choices[0].message.content == TEXT10
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (5, 10)
    assert result.usage.total_tokens == 15


async def test_max_tokens_limits_completion(oai: openai.AsyncOpenAI) -> None:
    result = await oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert result.usage is not None and result.usage.completion_tokens == 3
    assert result.choices[0].finish_reason == "length"


async def test_chat_stream_usage_chunk_only_when_asked(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        **CHAT, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT10
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 10)
    assert all(c.usage is None for c in chunks[:-1])

    plain = await oai.chat.completions.create(**CHAT, stream=True)
    assert all(c.usage is None and c.choices for c in [c async for c in plain])


async def test_chat_stream_wire_ends_with_done(up: FakeUpstream) -> None:
    status, raw = await post(up, "/v1/chat/completions", {**CHAT, "stream": True})
    assert status == 200
    data = sse_data(raw)
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["choices"][0]["finish_reason"] == "stop"
    assert len(data) == 1 + 10 + 1 + 1  # role chunk, one per token, finish chunk, [DONE]


async def test_stream_helper_accumulates(oai: openai.AsyncOpenAI) -> None:
    async with oai.chat.completions.stream(
        **CHAT, stream_options={"include_usage": True}
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == TEXT10
    assert final.usage is not None and final.usage.total_tokens == 13


async def test_legacy_completions(oai: openai.AsyncOpenAI) -> None:
    result = await oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="a b c d")
    assert result.choices[0].text == TEXT10
    assert result.usage is not None and result.usage.prompt_tokens == 4
    stream = await oai.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt="a b",
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from the fake"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_embeddings(up: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    # the SDK asks for base64 by default and decodes it
    result = await oai.embeddings.create(
        model="text-embedding-3-small", input=["a b", "c d e"], dimensions=4
    )
    assert [len(d.embedding) for d in result.data] == [4, 4]
    assert result.usage.prompt_tokens == 5 and result.usage.total_tokens == 5
    assert up.requests[-1].json["encoding_format"] == "base64"

    status, raw = await post(up, "/v1/embeddings", {"model": "m", "input": "x y"})
    body = json.loads(raw)
    assert status == 200 and body["object"] == "list"
    assert isinstance(body["data"][0]["embedding"][0], float)
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


async def test_responses(oai: openai.AsyncOpenAI) -> None:
    result = await oai.responses.create(
        model="gpt-4.1", input="one two", instructions="be terse", max_output_tokens=5
    )
    assert result.model == "gpt-4.1"
    assert result.output_text == "Hello from the fake upstream"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (4, 5)


async def test_responses_stream(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.responses.create(model="gpt-4.1", input="one two", stream=True)
    events = [e async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 10
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.usage is not None and final.response.usage.output_tokens == 10

    async with oai.responses.stream(model="gpt-4.1", input="x") as helper:
        done = await helper.get_final_response()
    assert done.output_text == TEXT10


async def test_models(oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic) -> None:
    ids = [m.id async for m in oai.models.list()]
    assert "gpt-4o" in ids
    page = await claude.models.list()
    assert "claude-sonnet-4-5" in [m.id for m in page.data]


async def test_azure_deployment_path(up: FakeUpstream) -> None:
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=up.url, api_key="sk-a", api_version="2024-10-21", max_retries=0
    ) as azure:
        result = await azure.chat.completions.create(
            model="my-deployment", messages=[{"role": "user", "content": "hi"}]
        )
    assert result.model == "my-deployment"
    assert up.requests[-1].headers["api-key"] == "sk-a"
    assert up.requests[-1].query["api-version"] == "2024-10-21"


async def test_bad_request_in_openai_shape(up: FakeUpstream) -> None:
    status, raw = await post(up, "/v1/chat/completions", {"messages": []})
    error = json.loads(raw)["error"]
    assert status == 400
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


# ------------------------------------------------------------------ Anthropic


async def test_message_parsed_by_anthropic_sdk(claude: anthropic.AsyncAnthropic) -> None:
    result = await claude.messages.create(
        model="claude-test-1",
        max_tokens=1024,
        system="you are terse",
        messages=[{"role": "user", "content": "one two three"}],
    )
    assert result.model == "claude-test-1"
    assert result.content[0].type == "text" and result.content[0].text == TEXT10
    assert result.stop_reason == "end_turn"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (6, 10)


async def test_message_stream(up: FakeUpstream, claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(
        model="claude-test-2",
        max_tokens=4,
        messages=[{"role": "user", "content": "a b"}],
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "Hello from the fake"
    assert final.stop_reason == "max_tokens"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 4)
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"

    body = {"model": "m", "max_tokens": 2, "stream": True, "messages": []}
    _, raw = await post(up, "/v1/messages", body)
    names = [line[7:] for line in raw.decode().splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_anthropic_requires_max_tokens(up: FakeUpstream) -> None:
    status, raw = await post(up, "/v1/messages", {"model": "m", "messages": []})
    assert status == 400
    assert json.loads(raw) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


# ------------------------------------------------------------------ keys


async def test_valid_keys(up: FakeUpstream) -> None:
    up.valid_keys = {"sk-a", "sk-b"}
    async with openai_client(up, "sk-b") as good:
        await good.models.list()
    async with openai_client(up, "sk-x") as bad:
        with pytest.raises(openai.AuthenticationError) as caught:
            await bad.chat.completions.create(**CHAT)
    assert caught.value.code == "invalid_api_key"

    async with anthropic_client(up, "sk-x") as wrong:
        with pytest.raises(anthropic.AuthenticationError) as denied:
            await wrong.messages.create(model="m", max_tokens=5, messages=[])
    assert denied.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }

    status, raw = await post(up, "/v1/chat/completions", CHAT)
    assert status == 401 and "didn't provide an API key" in json.loads(raw)["error"]["message"]
    status, _ = await post(up, "/v1/chat/completions", CHAT, **{"api-key": "sk-a"})
    assert status == 200
    assert up.requests[-1].headers["api-key"] == "sk-a"


# ------------------------------------------------------------------ faults


async def test_status_fault_with_retry_after(up: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    up.enqueue(Fault.status(429, retry_after="2"), Fault.status(503))
    with pytest.raises(openai.RateLimitError) as limited:
        await oai.chat.completions.create(**CHAT)
    assert limited.value.response.headers["retry-after"] == "2"
    assert limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError) as unavailable:
        await oai.chat.completions.create(**CHAT)
    assert unavailable.value.status_code == 503
    assert (await oai.chat.completions.create(**CHAT)).usage is not None  # then normal


async def test_status_fault_anthropic_shape(up: FakeUpstream) -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    up.enqueue(Fault.status(529, retry_after=date))
    async with (
        aiohttp.ClientSession() as session,
        session.post(up.url + "/v1/messages", json={}) as response,
    ):
        assert response.status == 529
        assert response.headers["Retry-After"] == date
        body = await response.json()
    assert body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


async def test_sdk_retry_honours_retry_after(up: FakeUpstream) -> None:
    up.enqueue(Fault.status(429, retry_after="0"))
    async with openai_client(up, max_retries=1) as client:
        result = await client.chat.completions.create(**CHAT)
    assert result.choices[0].message.content == TEXT10
    assert len(up.requests) == 2


async def test_reset_fault(up: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    up.enqueue(Fault.reset())
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(up, "/v1/chat/completions", CHAT)
    up.enqueue(Fault.reset())
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(**CHAT)
    status, _ = await post(up, "/v1/chat/completions", CHAT)
    assert status == 200


async def test_hang_fault(up: FakeUpstream) -> None:
    up.enqueue(Fault.hang(0.3), Fault.hang(5.0))
    started = time.monotonic()
    status, _ = await post(up, "/v1/chat/completions", CHAT)
    assert status == 200 and time.monotonic() - started >= 0.3
    async with openai_client(up, timeout=0.2) as impatient:
        with pytest.raises(openai.APITimeoutError):
            await impatient.chat.completions.create(**CHAT)


async def test_cut_stream_fault(up: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    up.enqueue(Fault.cut_stream(after_chunks=3))
    received: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        body = {**CHAT, "stream": True}
        async with session.post(up.url + "/v1/chat/completions", json=body) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                async for line in response.content:
                    received.append(line)
    assert len([line for line in received if line.startswith(b"data: ")]) == 3

    up.enqueue(Fault.cut_stream(after_chunks=2))
    with pytest.raises(openai.APIError):
        stream = await oai.chat.completions.create(**CHAT, stream=True)
        _ = [c async for c in stream]

    up.enqueue(Fault.cut_stream(after_chunks=0))  # non-streaming: half a JSON body
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(up, "/v1/chat/completions", CHAT)


async def test_no_usage_fault(up: FakeUpstream, oai: openai.AsyncOpenAI) -> None:
    up.enqueue(Fault.no_usage(), Fault.no_usage(), Fault.no_usage())
    stream = await oai.chat.completions.create(
        **CHAT, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[-1].choices and all(c.usage is None for c in chunks)
    assert (await oai.chat.completions.create(**CHAT)).usage is None
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": []}
    _, raw = await post(up, "/v1/messages", body)
    assert all("usage" not in json.loads(d) for d in sse_data(raw))
    assert (await oai.chat.completions.create(**CHAT)).usage is not None


async def test_recorded_requests_and_clear(up: FakeUpstream) -> None:
    await post(up, "/v1/chat/completions", CHAT, **{"X-Custom": "v"})
    (recorded,) = up.requests
    assert (recorded.method, recorded.path, recorded.json) == ("POST", "/v1/chat/completions", CHAT)
    assert recorded.headers["x-custom"] == "v"
    assert recorded.received_at <= time.monotonic()
    up.enqueue(Fault.reset())
    up.clear()
    assert up.requests == []
    assert (await post(up, "/v1/chat/completions", CHAT))[0] == 200


# ------------------------------------------------------------------ standalone


async def test_standalone_process_and_control_endpoints() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 20)
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        async with aiohttp.ClientSession() as session:

            async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
                async with session.request(method, url + path, json=body) as response:
                    return response.status, await response.json()

            faults = [Fault.status(429, retry_after="1").to_json(), Fault.no_usage().to_json()]
            assert await call("POST", "/_fake/enqueue", faults) == (200, {"queued": 2})
            assert (await call("POST", "/v1/chat/completions", CHAT))[0] == 429
            assert "usage" not in (await call("POST", "/v1/chat/completions", CHAT))[1]
            await call("POST", "/_fake/valid-keys", ["sk-a"])
            assert (await call("POST", "/v1/chat/completions", CHAT))[0] == 401
            _, recorded = await call("GET", "/_fake/requests")
            assert [r["path"] for r in recorded] == ["/v1/chat/completions"] * 3
            assert recorded[0]["json"] == CHAT
            await call("POST", "/_fake/clear")
            assert await call("GET", "/_fake/requests") == (200, [])
    finally:
        process.terminate()
        process.wait(10)
