"""Which provider endpoint a request targets, decided on one normalised path.

Every decision (meter, refuse, pass) is taken on the path as the provider
will route it: percent-encoding resolved once, `;` parameters dropped, empty
and `.` segments removed, `..` resolved, no trailing slash. The gateway then
forwards exactly that path, so what is metered is what is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from yarl import URL

# path suffix -> billed endpoint kind; longest first so chat/completions beats completions
_BILLED = (
    ("/chat/completions", "chat"),
    ("/embeddings", "embeddings"),
    ("/responses", "responses"),
    ("/messages", "messages"),
)
# Endpoints that cost money but whose spend cannot be read from the answer (or
# that mint keys): name (sidecar.UNMETERED_ENDPOINTS) -> segments pattern.
# Matched anywhere in the path, so Azure's /openai/deployments/x/images/... too.
_UNMETERED = (
    ("realtime", re.compile(r"(^|/)realtime(/|$)")),
    ("batches", re.compile(r"(^|/)batches(/|$)")),
    ("images", re.compile(r"(^|/)images(/|$)")),
    ("audio", re.compile(r"(^|/)audio(/|$)")),
    ("fine-tuning", re.compile(r"(^|/)fine_tuning(/|$)")),
    ("videos", re.compile(r"(^|/)videos(/|$)")),
    ("assistants-runs", re.compile(r"(^|/)threads(/[^/]+)?/runs(/|$)")),
    # legacy text completions: OpenAI's /completions, Anthropic's /complete
    ("completions", re.compile(r"(^|/)(completions|complete)$")),
)
# Reading never costs: listing batches or fetching an image job stays allowed.
# Realtime is refused for every method (its WebSocket starts with a GET).
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# what may stay unescaped in a forwarded path segment (RFC 3986 pchar minus `;`)
_SAFE = "/:@!$&'()*+,=-._~"


# a path with none of these is already normal (and safe to send as it is)
_NEEDS_WORK = re.compile(r"%|;|//|/\.|/$|[^A-Za-z0-9/:@!$&'()*+,=\-._~]")
_UNSAFE = re.compile(r"[^A-Za-z0-9/:@!$&'()*+,=\-._~]")


class BadPath(ValueError):
    """The path cannot be normalised (invalid encoding, escapes the root)."""


def normalise_path(raw_path: str) -> str:
    """The path as a provider routes it, from the raw (still escaped) request path.

    Raises BadPath for invalid percent-encoding or UTF-8, control characters,
    backslashes, and `..` above the root. An escaped `?` or `#` stays part of
    its segment (it is escaped again when forwarded).
    """
    raw_path = raw_path.split("?", 1)[0]
    if raw_path.startswith("/") and not _NEEDS_WORK.search(raw_path):
        return raw_path  # the common case: nothing to resolve
    try:
        decoded = unquote(raw_path, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadPath("the path is not valid percent-encoded UTF-8") from exc
    if "%" in raw_path and re.search(r"%(?![0-9A-Fa-f]{2})", raw_path):
        raise BadPath("the path has an invalid percent-escape")
    if any(ord(c) < 0x20 or c in "\x7f\\" for c in decoded):
        # some servers read a backslash as a slash: it would route differently
        raise BadPath("the path has a control character or a backslash once decoded")
    segments: list[str] = []
    for part in decoded.split("/"):
        segment = part.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise BadPath("the path climbs above the root")
            segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def encode_path(path: str) -> str:
    """A normalised path escaped for the request line."""
    return quote(path, safe=_SAFE) if _UNSAFE.search(path) else path


@dataclass(frozen=True, slots=True)
class Route:
    """What the outbound door does with a request."""

    kind: str | None  # billed endpoint kind (metered), None otherwise
    refused: str | None = None  # name of an unmetered endpoint that is not allowed


def route(method: str, path: str, provider: str, allowed: frozenset[str]) -> Route:
    """Meter, refuse or pass `method path` (a normalised path) for `provider`."""
    kind = billed_kind(method, path, provider)
    if kind is not None:
        return Route(kind)
    for name, pattern in _UNMETERED:
        if (method not in _READ_METHODS or name == "realtime") and pattern.search(path):
            if name not in allowed:
                return Route(None, refused=name)
            # allowed legacy completions are still metered (their answers carry usage)
            return Route("completions" if name == "completions" and method == "POST" else None)
    return Route(None)


def billed_kind(method: str, path: str, provider: str) -> str | None:
    """The metered endpoint a request targets, or None."""
    if method != "POST":
        return None
    for suffix, kind in _BILLED:
        if path.endswith(suffix):
            # /v1/messages is billed only for Anthropic (OpenAI's POST .../threads/{id}/messages
            # is not a model call); the OpenAI shapes are billed for every provider, since
            # Anthropic serves /v1/chat/completions too (its OpenAI SDK compatibility)
            return None if kind == "messages" and provider != "anthropic" else kind
    return None


def upstream_path(base: URL, path: str) -> str:
    """Join the upstream base path and the (escaped) request path, collapsing a shared `/v1`."""
    prefix = base.raw_path.rstrip("/")
    if prefix.endswith("/v1") and (path == "/v1" or path.startswith("/v1/")):
        path = path[3:]
    return prefix + path
