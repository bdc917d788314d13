"""What the prompt guard reads from an inbound body, and when it cannot.

Fail closed: a body the agent's framework could read as JSON is parsed as
JSON whatever its Content-Type (Starlette's `request.json()` ignores the
header); a body declared as JSON, or untyped, that does not parse is
unreadable; text and forms are scanned as text; only a body that is not
UTF-8 under a binary media type is unscannable. Parsing is bounded: nesting
depth and the number of values are checked on the raw bytes before
`json.loads` builds anything, so neither RecursionError nor a body of a
million empty objects can take the process down.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

MAX_DEPTH = 64  # nesting of JSON arrays and objects
MAX_VALUES = 100_000  # JSON values (each costs ~100 bytes once parsed)

# one JSON string literal (unrolled loop: linear, no backtracking)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_STRUCTURE = re.compile(rb"[\[\]{}]")
_JSON_START = re.compile(r"\s*[\[{\"]")


class Unreadable(ValueError):
    """The body cannot be read the way the agent would read it: 400 in block mode."""


class TooComplex(Unreadable):
    """Valid JSON, perhaps, but past the gateway's bounds on depth or size."""


class Unscannable(ValueError):
    """A binary body the guard cannot read at all: 415 in block mode."""


def is_json_type(content_type: str | None) -> bool:
    """JSON by its media type, or untyped (FastAPI and Starlette parse those as JSON)."""
    if content_type is None:
        return True
    return content_type == "application/json" or content_type.endswith("+json")


def screened_payload(body: bytes, content_type: str | None) -> object:
    """The decoded body the guard scans (a JSON value, a list of form fields or a text).

    `content_type` is the media type without parameters, None when absent.
    Raises Unreadable or Unscannable.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        if is_json_type(content_type) or _is_text_type(content_type):
            raise Unreadable("the body is not valid UTF-8") from None
        raise Unscannable(f"a {content_type} body the prompt guard cannot read") from None
    if is_json_type(content_type):
        return parse_json(body, text)
    if _JSON_START.match(text):
        # the agent may parse it as JSON anyway: scan both readings; past our
        # bounds it stays unreadable (escapes like \u0069 would hide from a text scan)
        try:
            return [parse_json(body, text), text]
        except TooComplex:
            raise
        except Unreadable:
            return text
    if content_type == "application/x-www-form-urlencoded":
        return form_texts(text, "the form body")
    return text


def query_texts(raw_query: str) -> list[str]:
    """Names and values of a raw query string, decoded once (an agent reads them)."""
    return form_texts(raw_query, "the query string") if raw_query else []


def form_texts(encoded: str, what: str) -> list[str]:
    """Names and values of URL-encoded fields; Unreadable naming `what` when they
    are not valid percent-encoded UTF-8 (or too many)."""
    try:
        fields = parse_qsl(
            encoded, keep_blank_values=True, errors="strict", max_num_fields=MAX_VALUES
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise Unreadable(f"{what} is not valid percent-encoded UTF-8") from exc
    return [text for pair in fields for text in pair]


def parse_json(body: bytes, text: str) -> object:
    """json.loads, refused (Unreadable) when too deep, too many values, or invalid."""
    _check_shape(body)
    try:
        return json.loads(text)
    except ValueError as exc:  # syntax, trailing data, numbers past Python's digit limit
        raise Unreadable(f"the body is not valid JSON ({_reason(exc)})") from None
    except RecursionError:  # pragma: no cover - _check_shape bounds the depth first
        raise TooComplex(f"JSON nested deeper than {MAX_DEPTH} levels") from None


def _check_shape(body: bytes) -> None:
    opens = body.count(b"{") + body.count(b"[")
    if opens <= MAX_DEPTH and body.count(b",") < MAX_VALUES:
        return  # cannot be too deep nor too large: the common case costs two counts
    skeleton = _STRING.sub(b'""', body)  # brackets and commas inside strings do not count
    values = sum(skeleton.count(c) for c in (b",", b"[", b"{"))
    if values > MAX_VALUES:
        raise TooComplex(f"more than {MAX_VALUES} JSON values")
    depth = 0
    for match in _STRUCTURE.finditer(skeleton):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise TooComplex(f"JSON nested deeper than {MAX_DEPTH} levels")
        else:
            depth -= 1


def _is_text_type(content_type: str | None) -> bool:
    return content_type is not None and (
        content_type.startswith("text/") or content_type == "application/x-www-form-urlencoded"
    )


def _reason(exc: ValueError) -> str:
    # json's message quotes no input, only positions; keep it short all the same
    return str(exc).split(":", 1)[0][:120]
