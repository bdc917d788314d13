"""Per-provider dialects: key header, error shape, what the outbound guard screens."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent_operator.gateway.dialects import DIALECTS, dialect_for
from agent_operator.guard.jsonpath import collect
from agent_operator.sidecar import PROVIDERS

NONE: frozenset[str] = frozenset()
# the type tags and keys of content parts are strings too (scanned, harmless)
TAGS = {"type", "text", "input_text"}


def screened(provider: str, body: dict[str, Any], roles: frozenset[str] = NONE) -> set[str]:
    """The strings the guard scans of what the dialect hands it."""
    return set(collect(dialect_for(provider).screened_parts(body, roles), None)) - TAGS


OPENAI_CHAT = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "system text"},
        {"role": "developer", "content": "developer text"},
        {"role": "user", "content": [{"type": "text", "text": "user text"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "tool text"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "tool part"}]},
        {"role": "function", "name": "f", "content": "function text"},
    ],
}
RESPONSES = {
    "model": "gpt-4o",
    "instructions": "instructions text",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "user text"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "function output"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "custom output"},
    ],
}
ANTHROPIC = {
    "model": "claude-sonnet-4-5",
    "system": [{"type": "text", "text": "system text"}],
    "messages": [
        {"role": "user", "content": "user text"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "input": {}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "tool text"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t2",
                    "content": [{"type": "text", "text": "tool block"}],
                },
                {"type": "text", "text": "user follow-up"},
            ],
        },
    ],
}


def test_every_provider_has_a_dialect() -> None:
    assert set(DIALECTS) == set(PROVIDERS)


@pytest.mark.parametrize(
    ("provider", "header", "value"),
    [
        ("openai", "Authorization", "Bearer sk-1"),
        ("azure-openai", "api-key", "sk-1"),
        ("anthropic", "x-api-key", "sk-1"),
    ],
)
def test_key_header(provider: str, header: str, value: str) -> None:
    assert dialect_for(provider).authorization("sk-1") == (header, value)


def test_error_shapes_are_the_providers() -> None:
    openai = json.loads(dialect_for("openai").error(400, "no", "kind", rule="r").body)  # type: ignore[arg-type]
    assert openai == {"error": {"message": "no", "type": "kind", "rule": "r", "code": "kind"}}
    anthropic = json.loads(dialect_for("anthropic").error(400, "no", "kind").body)  # type: ignore[arg-type]
    assert anthropic == {"type": "error", "error": {"message": "no", "type": "kind"}}


@pytest.mark.parametrize("provider", ["openai", "azure-openai", "openai-compatible"])
def test_openai_tool_results(provider: str) -> None:
    assert screened(provider, OPENAI_CHAT) == {"tool text", "tool part", "function text"}


def test_openai_roles_named_in_the_spec() -> None:
    texts = screened("openai", OPENAI_CHAT, frozenset({"user", "developer"}))
    assert {"user text", "developer text"} <= texts
    assert "system text" not in texts


def test_responses_api_outputs_and_roles() -> None:
    assert screened("openai", RESPONSES) == {"function output", "custom output"}
    with_roles = screened("openai", RESPONSES, frozenset({"user", "system"}))
    assert {"user text", "instructions text"} <= with_roles
    # a bare string input is the user's message
    bare = {"model": "gpt-4o", "input": "hello"}
    assert screened("openai", bare) == set()
    assert screened("openai", bare, frozenset({"user"})) == {"hello"}


def test_anthropic_tool_results() -> None:
    assert screened("anthropic", ANTHROPIC) == {"tool text", "tool block"}
    # each part once, though tool results sit inside user messages
    parts = dialect_for("anthropic").screened_parts(ANTHROPIC, frozenset({"user"}))
    assert collect(parts, None).count("tool text") == 1
    assert {"user text", "user follow-up"} <= screened("anthropic", ANTHROPIC, frozenset({"user"}))
    assert "system text" in screened("anthropic", ANTHROPIC, frozenset({"system"}))


def test_anthropic_reads_its_openai_compatible_endpoint_too() -> None:
    assert "tool text" in screened("anthropic", OPENAI_CHAT)


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize(
    "content",
    [
        {"unexpected": {"shape": ["tool text"]}},  # an odd shape is screened, not skipped
        _nested(50_000, "tool text"),  # deeper than Python's recursion limit
    ],
)
def test_odd_shapes_are_screened(content: object) -> None:
    body = {"messages": [{"role": "tool", "content": content}]}
    assert "tool text" in screened("openai", body)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": "not a list"},
        {"messages": [1, None, "x", {"role": "tool"}]},
        {"input": 7},
        {"input": [{"type": 3}, {"type": "function_call_output"}]},
    ],
)
def test_malformed_bodies_yield_nothing(body: dict[str, Any]) -> None:
    for provider in DIALECTS:
        assert screened(provider, body, frozenset({"user", "system"})) == set()
