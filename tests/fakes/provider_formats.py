"""Response bodies in the OpenAI and Anthropic wire formats, as bytes.

Pure functions (no clock, no randomness apart from the `ident` and `created`
the caller passes), so the fake upstream can cache their output per request
shape. Field names follow the providers' API references; the official SDKs
parse these bodies in tests/unit/fakes/test_upstream.py.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterable
from typing import Any

# The completion text is a cycle over these words; one word = one token = one
# stream chunk, so `cut_stream(after_chunks=N)` and token counts line up.
WORDS = ("Hello", "from", "the", "fake", "upstream", "model", "with", "tokens", "to", "count")

# Keys whose values are never prompt text (roles, ids, media).
_NOT_TEXT = frozenset({"role", "type", "name", "id", "cache_control", "image_url", "source"})


def dumps(obj: Any) -> bytes:
    """Compact JSON, as the providers send it."""
    return json.dumps(obj, separators=(",", ":")).encode()


def count_words(value: Any) -> int:
    """Prompt tokens of a request field: whitespace-separated words in every
    text string under it; a list of token ids (ints) counts its length."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return 1
    if isinstance(value, list):
        return sum(count_words(v) for v in value)
    if isinstance(value, dict):
        return sum(count_words(v) for k, v in value.items() if k not in _NOT_TEXT)
    return 0


def completion_words(n: int) -> list[str]:
    """The n stream pieces of a completion; joined they give the full text."""
    return [(" " if i else "") + WORDS[i % len(WORDS)] for i in range(n)]


def sse_data(obj: Any) -> bytes:
    """An OpenAI-style SSE event: a `data:` line only."""
    return b"data: " + dumps(obj) + b"\n\n"


def sse_event(name: str, obj: Any) -> bytes:
    """An SSE event with an `event:` line (Anthropic, OpenAI Responses)."""
    return b"event: " + name.encode() + b"\ndata: " + dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


# ---------------------------------------------------------------- errors


_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}

_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded"),
}


def openai_error(status: int, message: str | None = None, param: str | None = None) -> bytes:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    default = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error.")
    )
    kind, code, text = default
    return dumps(
        {"error": {"message": message or text, "type": kind, "param": param, "code": code}}
    )


def anthropic_error(status: int, message: str | None = None) -> bytes:
    """Anthropic's error body: {"type": "error", "error": {"type", "message"}}."""
    kind, text = _ANTHROPIC_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", "Error.")
    )
    return dumps({"type": "error", "error": {"type": kind, "message": message or text}})


# ---------------------------------------------------------------- OpenAI


def _openai_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(
    ident: str, created: int, model: str, prompt: int, completion: int, finish: str, usage: bool
) -> bytes:
    """Non-streaming `chat.completion` object."""
    body: dict[str, Any] = {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "".join(completion_words(completion)),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }
    if usage:
        body["usage"] = _openai_usage(prompt, completion)
    return dumps(body)


def chat_completion_chunks(
    ident: str,
    created: int,
    model: str,
    prompt: int,
    completion: int,
    finish: str,
    include_usage: bool,
) -> list[bytes]:
    """SSE events of a streamed chat completion, `[DONE]` included.

    With `include_usage`, every chunk carries `"usage": null` and one last
    chunk with empty `choices` carries the usage, as OpenAI sends it."""
    head = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict[str, Any], reason: str | None) -> bytes:
        body: dict[str, Any] = {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
        }
        if include_usage:
            body["usage"] = None
        return sse_data(body)

    events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    events += [chunk({"content": word}, None) for word in completion_words(completion)]
    events.append(chunk({}, finish))
    if include_usage:
        events.append(sse_data({**head, "choices": [], "usage": _openai_usage(prompt, completion)}))
    events.append(SSE_DONE)
    return events


def text_completion(
    ident: str, created: int, model: str, prompt: int, completion: int, finish: str, usage: bool
) -> bytes:
    """Non-streaming legacy `text_completion` object (/v1/completions)."""
    body: dict[str, Any] = {
        "id": ident,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "text": "".join(completion_words(completion)),
                "index": 0,
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "system_fingerprint": "fp_fake",
    }
    if usage:
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return dumps(body)


def text_completion_chunks(
    ident: str,
    created: int,
    model: str,
    prompt: int,
    completion: int,
    finish: str,
    include_usage: bool,
) -> list[bytes]:
    """SSE events of a streamed legacy completion, `[DONE]` included."""
    head = {"id": ident, "object": "text_completion", "created": created, "model": model}

    def chunk(text: str, reason: str | None) -> bytes:
        body: dict[str, Any] = {
            **head,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}],
        }
        if include_usage:
            body["usage"] = None
        return sse_data(body)

    words = completion_words(completion)
    events = [chunk(w, finish if i == len(words) - 1 else None) for i, w in enumerate(words)]
    if not words:
        events.append(chunk("", finish))
    if include_usage:
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        events.append(sse_data({**head, "choices": [], "usage": usage}))
    events.append(SSE_DONE)
    return events


def embedding_vector(index: int, dimensions: int) -> list[float]:
    """A deterministic unit-ish vector, exactly representable in float32."""
    return [((index + i) % 7 - 3) / 4.0 for i in range(dimensions)]


def embeddings(
    model: str, inputs: list[Any], dimensions: int, encoding: str, prompt: int, usage: bool
) -> bytes:
    """/v1/embeddings list; `encoding` "base64" packs little-endian float32 as
    the OpenAI SDK requests by default."""
    data = []
    for i, _ in enumerate(inputs):
        vector = embedding_vector(i, dimensions)
        value: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            if encoding == "base64"
            else vector
        )
        data.append({"object": "embedding", "index": i, "embedding": value})
    body: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if usage:
        body["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
    return dumps(body)


def _response_object(
    ident: str,
    created: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    max_output_tokens: int | None,
) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _responses_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _message_item(msg_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "type": "message",
        "id": msg_id,
        "status": status,
        "role": "assistant",
        "content": content if status == "completed" else [],
    }


def response(
    ident: str,
    created: int,
    model: str,
    prompt: int,
    completion: int,
    max_output_tokens: int | None,
    usage: bool,
) -> bytes:
    """Non-streaming /v1/responses object."""
    item = _message_item("msg_" + ident[5:], "".join(completion_words(completion)), "completed")
    return dumps(
        _response_object(
            ident,
            created,
            model,
            "completed",
            [item],
            _responses_usage(prompt, completion) if usage else None,
            max_output_tokens,
        )
    )


def response_events(
    ident: str,
    created: int,
    model: str,
    prompt: int,
    completion: int,
    max_output_tokens: int | None,
    usage: bool,
) -> list[bytes]:
    """SSE events of a streamed /v1/responses call: created, in_progress,
    item/part added, one `response.output_text.delta` per token, the done
    events and `response.completed` (with usage). No `[DONE]` sentinel."""
    msg_id = "msg_" + ident[5:]
    words = completion_words(completion)
    text = "".join(words)
    seq = iter(range(1 << 30))
    events: list[bytes] = []

    def emit(name: str, **fields: Any) -> None:
        events.append(sse_event(name, {"type": name, "sequence_number": next(seq), **fields}))

    start = _response_object(ident, created, model, "in_progress", [], None, max_output_tokens)
    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    emit(
        "response.output_item.added", output_index=0, item=_message_item(msg_id, "", "in_progress")
    )
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    loc = {"item_id": msg_id, "output_index": 0, "content_index": 0}
    emit("response.content_part.added", **loc, part=part)
    for word in words:
        emit("response.output_text.delta", **loc, delta=word, logprobs=[])
    emit("response.output_text.done", **loc, text=text, logprobs=[])
    emit("response.content_part.done", **loc, part={**part, "text": text})
    done_item = _message_item(msg_id, text, "completed")
    emit("response.output_item.done", output_index=0, item=done_item)
    final = _response_object(
        ident,
        created,
        model,
        "completed",
        [done_item],
        _responses_usage(prompt, completion) if usage else None,
        max_output_tokens,
    )
    emit("response.completed", response=final)
    return events


def openai_models(models: Iterable[str], created: int) -> bytes:
    """GET /v1/models, OpenAI shape."""
    data = [{"id": m, "object": "model", "created": created, "owned_by": "system"} for m in models]
    return dumps({"object": "list", "data": data})


# ---------------------------------------------------------------- Anthropic


def _anthropic_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": completion,
        "service_tier": "standard",
    }


def message(ident: str, model: str, prompt: int, completion: int, stop: str, usage: bool) -> bytes:
    """Non-streaming Anthropic `message` object (POST /v1/messages)."""
    body: dict[str, Any] = {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(completion_words(completion))}],
        "stop_reason": stop,
        "stop_sequence": None,
    }
    if usage:
        body["usage"] = _anthropic_usage(prompt, completion)
    return dumps(body)


def message_events(
    ident: str, model: str, prompt: int, completion: int, stop: str, usage: bool
) -> list[bytes]:
    """SSE events of a streamed Anthropic message: message_start (usage with
    input_tokens), content_block_start, ping, one content_block_delta per
    token, content_block_stop, message_delta (usage.output_tokens),
    message_stop. Without `usage` both usage objects are left out."""
    start: dict[str, Any] = {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage:
        start["usage"] = _anthropic_usage(prompt, 1)
    events = [
        sse_event("message_start", {"type": "message_start", "message": start}),
        sse_event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        sse_event("ping", {"type": "ping"}),
    ]
    events += [
        sse_event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}},
        )
        for w in completion_words(completion)
    ]
    events.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
    }
    if usage:
        delta["usage"] = {"output_tokens": completion}
    events.append(sse_event("message_delta", delta))
    events.append(sse_event("message_stop", {"type": "message_stop"}))
    return events


def anthropic_models(models: Iterable[str]) -> bytes:
    """GET /v1/models, Anthropic shape (sent when `anthropic-version` is set)."""
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in models
    ]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return dumps({"data": data, "has_more": False, "first_id": first, "last_id": last})
