"""Token usage from provider responses: JSON bodies and SSE streams.

OpenAI chat/completions/embeddings report `prompt_tokens`/`completion_tokens`;
the Responses API and Anthropic report `input_tokens`/`output_tokens`
(Anthropic adds cache tokens on top of `input_tokens`). In streams, OpenAI
sends usage in a last chunk with `choices: []` when `stream_options.include_usage`
is set; Responses sends it in `response.completed`; Anthropic in
`message_start` (input) and `message_delta` (cumulative output).
"""

from __future__ import annotations

import json
import re
from typing import Any

# a usage object (not `"usage":null`): only events that carry one are parsed
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_EVENT_SEP = re.compile(rb"(\r?\n\r?\n)")
# string values that carry generated text, for estimating output when usage never came
_CONTENT = re.compile(rb'"(?:content|text|delta|partial_json|arguments)"\s*:\s*"((?:[^"\\]|\\.)*)"')
CHARS_PER_TOKEN = 4  # the usual rough figure for English text


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


class UsageMeter:
    """Accumulates the usage seen for one request (tokens) and the response model."""

    __slots__ = ("found", "input_tokens", "output_tokens", "response_model")

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.found = False
        self.response_model: str | None = None

    def feed(self, obj: Any) -> None:
        """Take usage and model from a decoded body or stream event, if present."""
        if not isinstance(obj, dict):
            return
        holder: Any = obj
        for nested in ("response", "message"):  # Responses events, Anthropic message_start
            inner = obj.get(nested)
            if isinstance(inner, dict) and ("usage" in inner or "model" in inner):
                holder = inner
                break
        model = holder.get("model") or obj.get("model")
        if isinstance(model, str) and model:
            self.response_model = model
        usage = holder.get("usage")
        if not isinstance(usage, dict):
            return
        self.found = True
        inp = _int(usage.get("prompt_tokens")) or (
            _int(usage.get("input_tokens"))
            + _int(usage.get("cache_creation_input_tokens"))
            + _int(usage.get("cache_read_input_tokens"))
        )
        out = _int(usage.get("completion_tokens")) or _int(usage.get("output_tokens"))
        # stream events repeat or grow the counts: keep the largest seen
        self.input_tokens = max(self.input_tokens, inp)
        self.output_tokens = max(self.output_tokens, out)


def is_usage_only_chunk(obj: Any) -> bool:
    """OpenAI's extra last chunk, produced only because we asked for usage."""
    return isinstance(obj, dict) and obj.get("choices") == [] and isinstance(obj.get("usage"), dict)


def _last_boundary(buf: bytes) -> int:
    """Index just past the last complete SSE event in `buf` (0 when none)."""
    lf = buf.rfind(b"\n\n")
    crlf = buf.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def _event_json(event: bytes) -> Any:
    data = [line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")]
    if not data:
        return None
    try:
        return json.loads(b"\n".join(data))
    except ValueError:
        return None


class SseTap:
    """Passes an SSE stream through event-aligned, reading usage on the way.

    Bytes are forwarded as soon as an event is complete (never the whole
    body). Only events carrying a usage object are decoded. When
    `strip_usage_chunk` is set, OpenAI's usage-only chunk is removed because
    the client did not ask for it.
    """

    __slots__ = ("_buf", "delivered_chars", "meter", "strip_usage_chunk")

    def __init__(self, meter: UsageMeter, strip_usage_chunk: bool) -> None:
        self.meter = meter
        self.strip_usage_chunk = strip_usage_chunk
        self.delivered_chars = 0
        self._buf = b""

    def feed(self, chunk: bytes) -> bytes:
        """Bytes of `chunk` (plus held-back bytes) that can be sent to the client now."""
        buf = self._buf + chunk if self._buf else chunk
        end = _last_boundary(buf)
        if end == 0:
            self._buf = buf
            return b""
        complete, self._buf = (buf, b"") if end == len(buf) else (buf[:end], buf[end:])
        return self._process(complete)

    def flush(self) -> bytes:
        """Whatever is left at the end of the stream (an unterminated last event)."""
        rest, self._buf = self._buf, b""
        return self._process(rest) if rest else b""

    def _process(self, complete: bytes) -> bytes:
        if _USAGE.search(complete) is not None:
            complete = self._read_usage(complete)
        for match in _CONTENT.finditer(complete):
            self.delivered_chars += len(match.group(1))
        return complete

    def _read_usage(self, complete: bytes) -> bytes:
        parts = _EVENT_SEP.split(complete)
        kept: list[bytes] = []
        # parts alternate: event, separator, event, separator, ..., trailing event
        for i in range(0, len(parts), 2):
            event = parts[i]
            sep = parts[i + 1] if i + 1 < len(parts) else b""
            if _USAGE.search(event) is not None:
                obj = _event_json(event)
                self.meter.feed(obj)
                if self.strip_usage_chunk and is_usage_only_chunk(obj):
                    continue
            kept.append(event)
            kept.append(sep)
        return b"".join(kept)


def content_chars(data: bytes) -> int:
    """Characters of generated text in a JSON body or SSE stream (for estimates)."""
    return sum(len(match.group(1)) for match in _CONTENT.finditer(data))


def estimate_tokens(chars: int) -> int:
    """Rough token count for `chars` characters of text (at least 1 when chars > 0)."""
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
