"""HTTP plumbing shared by both doors: header filtering, request ids, JSON errors."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Mapping

from aiohttp import web
from multidict import CIMultiDict

# RFC 9110 section 7.6.1 connection-specific headers, plus what aiohttp recomputes
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# credentials the agent may send: the gateway injects its own, never forwards these
AGENT_CREDENTIALS = frozenset({"authorization", "x-api-key", "api-key"})
REQUEST_ID = "X-Request-ID"
# request Content-Encodings that aiohttp's server decodes before a handler reads
# the body (aiohttp.http_parser, with its own cap against zip bombs): a body
# forwarded from such a request is plain and must lose the label
DECODED_BY_SERVER = frozenset({"gzip", "deflate", "br", "zstd"})


_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """Unique id: a random per-process prefix plus a counter (no syscall per request)."""
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


def copy_headers(headers: Mapping[str, str], drop: frozenset[str]) -> CIMultiDict[str]:
    """Headers minus the (lower-case) names in `drop` and those the `Connection`
    header names (RFC 9110 section 7.6.1: hop-by-hop too); repeated headers kept."""
    connection = headers.get("Connection")
    if connection:
        drop = drop | {token.strip().lower() for token in connection.split(",")}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in drop:
            out.add(name, value)
    return out


def drop_set(*groups: Iterable[str]) -> frozenset[str]:
    return frozenset(name.lower() for group in groups for name in group)


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def json_error(
    status: int,
    message: str,
    error_type: str,
    *,
    anthropic: bool = False,
    headers: Mapping[str, str] | None = None,
    **extra: object,
) -> web.Response:
    """A JSON error in the provider's own shape, so SDKs surface the message."""
    error: dict[str, object] = {"message": message, "type": error_type, **extra}
    if anthropic:
        payload: dict[str, object] = {"type": "error", "error": error}
    else:
        payload = {"error": {**error, "code": error_type}}
    return web.Response(
        status=status,
        body=_dumps(payload).encode(),
        content_type="application/json",
        headers=headers,
    )


def closing(response: web.Response) -> web.Response:
    """`response`, closing the connection after it: the rest of the body was never read."""
    response.force_close()
    return response
