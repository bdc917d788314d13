from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_operator.gateway.usage import SseTap, UsageMeter, estimate_tokens, is_usage_only_chunk


def sse(obj: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def chunk(text: str) -> dict[str, object]:
    return {
        "id": "c",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": text}}],
        "usage": None,
    }


USAGE_CHUNK = {
    "id": "c",
    "model": "gpt-4o-2024-08-06",
    "choices": [],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}
OPENAI_STREAM = [
    sse(chunk("Hel")),
    sse(chunk("lo")),
    sse(chunk("!")),
    sse(USAGE_CHUNK),
    b"data: [DONE]\n\n",
]
ANTHROPIC_STREAM = [
    sse(
        {
            "type": "message_start",
            "message": {
                "id": "m",
                "model": "claude-sonnet-4-5",
                "usage": {"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 1},
            },
        },
        "message_start",
    ),
    sse(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hi there"},
        },
        "content_block_delta",
    ),
    sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 12},
        },
        "message_delta",
    ),
    sse({"type": "message_stop"}, "message_stop"),
]


@pytest.mark.parametrize(
    ("body", "tokens", "model"),
    [
        (
            {"model": "gpt-4o", "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
            (5, 2),
            "gpt-4o",
        ),
        ({"model": "e", "usage": {"prompt_tokens": 9, "total_tokens": 9}}, (9, 0), "e"),
        ({"model": "gpt-4o", "usage": {"input_tokens": 4, "output_tokens": 6}}, (4, 6), "gpt-4o"),
        (
            {
                "model": "claude",
                "usage": {
                    "input_tokens": 4,
                    "cache_creation_input_tokens": 2,
                    "cache_read_input_tokens": 1,
                    "output_tokens": 6,
                },
            },
            (7, 6),
            "claude",
        ),
        (
            {
                "type": "response.completed",
                "response": {"model": "gpt-4o", "usage": {"input_tokens": 3, "output_tokens": 8}},
            },
            (3, 8),
            "gpt-4o",
        ),
    ],
)
def test_meter_reads_every_usage_shape(
    body: dict[str, object], tokens: tuple[int, int], model: str
) -> None:
    meter = UsageMeter()
    meter.feed(body)
    assert meter.found and (meter.input_tokens, meter.output_tokens) == tokens
    assert meter.response_model == model


def test_meter_ignores_null_usage_and_non_objects() -> None:
    meter = UsageMeter()
    for item in ({"usage": None}, [1, 2], "x", None, {"usage": {"prompt_tokens": "many"}}):
        meter.feed(item)
    assert (meter.input_tokens, meter.output_tokens) == (0, 0)


def run(tap: SseTap, pieces: list[bytes]) -> bytes:
    return b"".join(tap.feed(p) for p in pieces) + tap.flush()


def test_openai_usage_chunk_is_read_and_stripped() -> None:
    meter = UsageMeter()
    out = run(SseTap(meter, strip_usage_chunk=True), OPENAI_STREAM)
    assert out == b"".join(OPENAI_STREAM[:3] + OPENAI_STREAM[4:])
    assert (meter.input_tokens, meter.output_tokens) == (7, 3)
    assert meter.response_model == "gpt-4o-2024-08-06"


def test_openai_usage_chunk_kept_when_client_asked() -> None:
    meter = UsageMeter()
    assert run(SseTap(meter, strip_usage_chunk=False), OPENAI_STREAM) == b"".join(OPENAI_STREAM)
    assert meter.found


def test_anthropic_stream_usage() -> None:
    meter = UsageMeter()
    tap = SseTap(meter, strip_usage_chunk=False)
    assert run(tap, ANTHROPIC_STREAM) == b"".join(ANTHROPIC_STREAM)
    assert (meter.input_tokens, meter.output_tokens) == (25, 12)
    assert tap.delivered_chars == len("Hi there")


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_any_chunking_gives_the_same_output(cuts: list[int]) -> None:
    whole = b"".join(OPENAI_STREAM).replace(b"\n\n", b"\r\n\r\n", 2)
    pieces, pos = [], 0
    for cut in cuts:
        pieces.append(whole[pos : pos + cut])
        pos += cut
    pieces.append(whole[pos:])
    meter = UsageMeter()
    tap = SseTap(meter, strip_usage_chunk=True)
    out = run(tap, pieces)
    assert out == whole.replace(sse(USAGE_CHUNK), b"")
    assert (meter.input_tokens, meter.output_tokens) == (7, 3)
    assert tap.delivered_chars == len("Hello!")


def test_events_are_forwarded_as_soon_as_complete() -> None:
    tap = SseTap(UsageMeter(), strip_usage_chunk=True)
    first = sse(chunk("a"))
    assert tap.feed(first[:10]) == b""
    assert tap.feed(first[10:] + b"data: {") == first  # the partial next event waits
    assert tap.flush() == b"data: {"


def test_usage_only_chunk_detection() -> None:
    assert is_usage_only_chunk(USAGE_CHUNK)
    assert not is_usage_only_chunk(chunk("x"))
    assert not is_usage_only_chunk({"choices": [], "usage": None})


def test_estimate_tokens() -> None:
    assert [estimate_tokens(n) for n in (0, 1, 4, 5, 400)] == [0, 1, 1, 2, 100]


def test_content_chars_counts_generated_text_only() -> None:
    from agent_operator.gateway.usage import content_chars

    body = (
        b'{"id":"x","model":"gpt-4o",'
        b'"choices":[{"message":{"role":"assistant","content":"abc\\"de"}}]}'
    )
    assert content_chars(body) == len('abc\\"de')
    assert content_chars(b'{"data":[{"embedding":[0.1]}]}') == 0
