"""What differs between the providers the outbound door speaks to: one Dialect each.

A dialect knows how its provider takes the key, how its errors look (so the
agent's SDK surfaces the gateway's message) and which parts of a request
body did not come from the agent's own instructions: tool and function
results, which carry text fetched from elsewhere (web pages, documents,
other systems) and so are where indirect prompt injection arrives.

Each dialect reads every request shape its provider serves: OpenAI, Azure
OpenAI and OpenAI-compatible servers take chat completions and the
Responses API; Anthropic takes
Messages and, for its OpenAI SDK compatibility, chat completions too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from agent_operator.gateway.wire import json_error

Reader = Callable[[Mapping[str, Any], frozenset[str]], Iterator[object]]


@dataclass(frozen=True, slots=True)
class Dialect:
    """One provider's wire conventions."""

    name: str
    key_header: str  # where the provider key goes
    key_prefix: str  # "Bearer " for Authorization, "" otherwise
    anthropic_errors: bool  # {"type": "error", "error": {...}} rather than {"error": {...}}
    readers: tuple[Reader, ...]  # request shapes whose screened parts this provider reads

    def authorization(self, key: str) -> tuple[str, str]:
        """The header that carries `key` upstream."""
        return self.key_header, self.key_prefix + key

    def error(
        self,
        status: int,
        message: str,
        error_type: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: object,
    ) -> web.Response:
        """An error in this provider's shape."""
        return json_error(
            status, message, error_type, anthropic=self.anthropic_errors, headers=headers, **extra
        )

    def screened_parts(self, payload: Mapping[str, Any], roles: frozenset[str]) -> list[object]:
        """The parts of `payload` the outbound guard screens: every tool or
        function result, and the content of messages whose role is in `roles`.

        Each part is taken whole (any nesting, any block type; the guard
        scans every string below it), so an odd shape is screened rather
        than skipped.
        """
        parts: list[object] = []
        seen: set[int] = set()  # a part two readers both find is screened once
        for read in self.readers:
            for part in read(payload, roles):
                if part is not None and id(part) not in seen:
                    seen.add(id(part))
                    parts.append(part)
        return parts


def _chat_messages(payload: Mapping[str, Any], roles: frozenset[str]) -> Iterator[object]:
    # OpenAI chat completions: {"role": "tool", "content": ...}; "function" is
    # the legacy form of the same thing.
    for message in _dicts(payload.get("messages")):
        role = message.get("role")
        if role in ("tool", "function") or role in roles:
            yield message.get("content")


def _responses_input(payload: Mapping[str, Any], roles: frozenset[str]) -> Iterator[object]:
    # Responses API: input items {"type": "function_call_output", "output": ...}
    # (custom_tool_call_output, computer_call_output, ... alike) and messages.
    items = payload.get("input")
    if isinstance(items, str):
        if "user" in roles:
            yield items  # a bare string input is one user message
        return
    for item in _dicts(items):
        kind = item.get("type")
        if isinstance(kind, str) and kind.endswith("_output"):
            yield item.get("output")
        elif item.get("role") in roles:
            yield item.get("content")
    if "system" in roles or "developer" in roles:
        yield payload.get("instructions")


def _anthropic_messages(payload: Mapping[str, Any], roles: frozenset[str]) -> Iterator[object]:
    # Anthropic Messages: tool results are content blocks of user messages,
    # {"type": "tool_result", "content": str | [blocks]}; the system prompt
    # is a top-level field, not a role.
    for message in _dicts(payload.get("messages")):
        content = message.get("content")
        if message.get("role") in roles:
            yield content
            continue
        for block in _dicts(content):
            if block.get("type") == "tool_result":
                yield block.get("content")
    if "system" in roles:
        yield payload.get("system")


def _dicts(value: object) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item


_OPENAI_SHAPES = (_chat_messages, _responses_input)
DIALECTS: Final = {
    "openai": Dialect("openai", "Authorization", "Bearer ", False, _OPENAI_SHAPES),
    # vLLM, Ollama, LM Studio, ... speak OpenAI's wire format
    "openai-compatible": Dialect(
        "openai-compatible", "Authorization", "Bearer ", False, _OPENAI_SHAPES
    ),
    "azure-openai": Dialect("azure-openai", "api-key", "", False, _OPENAI_SHAPES),
    "anthropic": Dialect("anthropic", "x-api-key", "", True, (_anthropic_messages, _chat_messages)),
}


def dialect_for(provider: str) -> Dialect:
    """The dialect of `provider` (a spec.model.provider value); KeyError otherwise."""
    return DIALECTS[provider]
