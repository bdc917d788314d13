"""Which provider endpoint a request targets, and where it goes upstream."""

from __future__ import annotations

from yarl import URL

# path suffix -> endpoint kind; longest first so chat/completions beats completions
_ENDPOINTS = (
    ("/chat/completions", "chat"),
    ("/completions", "completions"),
    ("/embeddings", "embeddings"),
    ("/responses", "responses"),
    ("/messages", "messages"),
)


def endpoint_kind(method: str, path: str, provider: str) -> str | None:
    """The billed endpoint a request targets, or None for a pass-through path."""
    if method != "POST":
        return None
    for suffix, kind in _ENDPOINTS:
        if path.endswith(suffix):
            # /v1/messages is billed only for Anthropic (OpenAI's POST .../threads/{id}/messages
            # is not a model call); the OpenAI shapes are billed for every provider, since
            # Anthropic serves /v1/chat/completions too (its OpenAI SDK compatibility)
            return None if kind == "messages" and provider != "anthropic" else kind
    return None


def upstream_path(base: URL, path: str) -> str:
    """Join the upstream base path and the request path, collapsing a shared `/v1`."""
    prefix = base.raw_path.rstrip("/")
    if prefix.endswith("/v1") and (path == "/v1" or path.startswith("/v1/")):
        path = path[3:]
    return prefix + path
