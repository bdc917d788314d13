"""Metering decisions are taken on one normalised path (gateway/endpoints.py)."""

from __future__ import annotations

import pytest

from agent_operator.gateway.endpoints import BadPath, Route, encode_path, normalise_path, route
from agent_operator.sidecar import UNMETERED_ENDPOINTS

NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    "raw",
    [
        "/v1/chat/completions",
        "/v1/chat/completions/",
        "/v1//chat//completions",
        "/v1/./chat/completions",
        "/v1/x/../chat/completions",
        "/v1/chat/completions;x=1",
        "/v1;a/chat;b/completions;c",
        "/v1/chat%2Fcompletions",
        "/v1/%63hat/completions",
        "//v1/chat/./x/..//completions/",
        "/v1/chat/completions?x=1",
    ],
)
def test_variants_of_a_billed_path_normalise_to_it(raw: str) -> None:
    assert normalise_path(raw) == "/v1/chat/completions"
    assert route("POST", normalise_path(raw), "openai", NONE) == Route("chat")


def test_escaped_query_and_fragment_marks_stay_in_their_segment() -> None:
    assert normalise_path("/v1/files/file%3Fx%23y") == "/v1/files/file?x#y"
    assert encode_path("/v1/files/file?x#y") == "/v1/files/file%3Fx%23y"


def test_percent_encoding_is_resolved_once() -> None:
    # %252F is a literal "%2F" in the segment, not a separator
    assert normalise_path("/v1/chat%252Fcompletions") == "/v1/chat%2Fcompletions"
    assert route("POST", "/v1/chat%2Fcompletions", "openai", NONE) == Route(None)
    assert encode_path("/v1/chat%2Fcompletions") == "/v1/chat%252Fcompletions"


@pytest.mark.parametrize(
    "raw",
    ["/v1/../../x", "/..", "/v1/%ff%fe", "/v1/%zz", "/v1/a%", "/v1/%00x", "/v1/a%5Cb", "/v1/a\\b"],
)
def test_paths_that_cannot_be_normalised_are_refused(raw: str) -> None:
    with pytest.raises(BadPath):
        normalise_path(raw)


@pytest.mark.parametrize(
    ("method", "path", "provider", "kind"),
    [
        ("POST", "/v1/chat/completions", "openai", "chat"),
        ("POST", "/v1/embeddings", "openai", "embeddings"),
        ("POST", "/v1/responses", "openai", "responses"),
        ("POST", "/openai/deployments/d/chat/completions", "azure-openai", "chat"),
        ("POST", "/v1/messages", "anthropic", "messages"),
        ("POST", "/v1/messages", "openai", None),
        # Anthropic's OpenAI-compatible endpoint: billed, or it would bypass the budget
        ("POST", "/v1/chat/completions", "anthropic", "chat"),
        ("POST", "/v1/threads/t1/messages", "openai", None),
        ("POST", "/v1/messages/count_tokens", "anthropic", None),
        ("GET", "/v1/models", "openai", None),
        ("GET", "/v1/chat/completions", "openai", None),
    ],
)
def test_billed_endpoints(method: str, path: str, provider: str, kind: str | None) -> None:
    assert route(method, path, provider, NONE) == Route(kind)


@pytest.mark.parametrize(
    ("method", "path", "provider", "name"),
    [
        ("POST", "/v1/images/generations", "openai", "images"),
        ("POST", "/openai/deployments/d/images/generations", "azure-openai", "images"),
        ("POST", "/v1/audio/speech", "openai", "audio"),
        ("POST", "/v1/audio/transcriptions", "openai-compatible", "audio"),
        ("POST", "/v1/batches", "openai", "batches"),
        ("POST", "/v1/messages/batches", "anthropic", "batches"),
        ("POST", "/v1/realtime/client_secrets", "openai", "realtime"),
        ("GET", "/v1/realtime", "openai", "realtime"),
        ("POST", "/v1/completions", "openai", "completions"),
        ("POST", "/v1/complete", "anthropic", "completions"),
        ("POST", "/v1/fine_tuning/jobs", "openai", "fine-tuning"),
        ("POST", "/v1/videos", "openai", "videos"),
        ("POST", "/v1/threads/runs", "openai", "assistants-runs"),
        ("POST", "/v1/threads/t1/runs", "openai", "assistants-runs"),
    ],
)
def test_unmetered_endpoints_are_refused_unless_allowed(
    method: str, path: str, provider: str, name: str
) -> None:
    assert name in UNMETERED_ENDPOINTS
    assert route(method, path, provider, NONE) == Route(None, refused=name)
    allowed = route(method, path, provider, frozenset({name}))
    assert allowed.refused is None
    # legacy completions answer with usage: once allowed, they are metered
    assert allowed.kind == ("completions" if name == "completions" else None)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/batches"), ("GET", "/v1/batches/b1"), ("DELETE", "/v1/videos/v1")],
)
def test_reading_a_costly_resource_is_free(method: str, path: str) -> None:
    assert route(method, path, "openai", NONE) == Route(None)
