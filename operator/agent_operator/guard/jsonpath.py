"""Collect the string values of a decoded JSON body, optionally by path.

Paths are a small subset of JSONPath: dotted keys and ``[*]`` / ``[N]``
indexes, e.g. ``messages[*].content``, ``input``, ``$.prompt``. A path that
lands on an object or array contributes every string below it (chat message
``content`` may be a list of parts).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence

_STEP = re.compile(r"\[(\*|-?\d+)\]|\.?([^.\[\]]+)")
# A JSON document inside a string is parsed up to this size; a larger one is
# scanned as written only (still scanned, escapes and all).
EMBEDDED_MAX_CHARS = 4 * 1024 * 1024
_DOCUMENT_START = re.compile(r"\s*[\[{]")

Step = str | int | None  # key, index, or None for [*]


def parse_path(path: str) -> tuple[Step, ...]:
    """Split ``path`` into steps; raise ``ValueError`` if it is malformed."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        match = _STEP.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"invalid JSON path {path!r} at offset {pos}")
        index, key = match.groups()
        if key is not None:
            steps.append(key)
        elif index == "*":
            steps.append(None)
        else:
            steps.append(int(index))
        pos = match.end()
    if not steps:
        raise ValueError(f"invalid JSON path {path!r}: empty")
    return tuple(steps)


def iter_strings(node: object) -> Iterator[str]:
    """Every string value below ``node``, and every distinct object key: an
    agent that puts the JSON itself into a prompt shows the model its keys too.

    In no particular order (scanning does not depend on it). The values of
    each object and array are filtered by type inside ``filter``, so a body
    of 100,000 strings costs no Python step per string.
    """
    stack = [node]
    keys: set[str] = set()
    strings: list[str] = []
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            keys.update(item)  # "role", "content" once per body, not per message
            values = list(item.values())
        elif isinstance(item, list):
            values = item
        else:
            if isinstance(item, str):
                strings.append(item)
            continue
        strings.extend(filter(_is_str, values))
        stack.extend(filter(_is_dict, values))
        stack.extend(filter(_is_list, values))
    yield from strings
    yield from keys


_is_str = str.__instancecheck__
_is_dict = dict.__instancecheck__
_is_list = list.__instancecheck__


def _select(node: object, steps: tuple[Step, ...]) -> Iterator[object]:
    if not steps:
        yield node
        return
    step, rest = steps[0], steps[1:]
    if step is None:
        if isinstance(node, list):
            for item in node:
                yield from _select(item, rest)
        elif isinstance(node, dict):
            for item in node.values():
                yield from _select(item, rest)
    elif isinstance(step, int):
        if isinstance(node, list) and -len(node) <= step < len(node):
            yield from _select(node[step], rest)
    elif isinstance(node, dict) and step in node:
        yield from _select(node[step], rest)


def collect(body: object, paths: Sequence[tuple[Step, ...]] | None) -> list[str]:
    """Strings of ``body`` selected by parsed ``paths`` (all strings if None)."""
    if paths is None:
        return list(iter_strings(body))
    out: list[str] = []
    for steps in paths:
        for node in _select(body, steps):
            out.extend(iter_strings(node))
    return out


def embedded_strings(text: str) -> list[str]:
    """The strings of the JSON object or array that ``text`` is, else [].

    Tools return JSON as text, so a tool result often is a JSON document
    inside a JSON string: the model reads its escapes decoded (``\\n`` as
    a line break, ``\\"`` as a quote, ``\\u0069`` as ``i``), and the
    guard scans those strings as well as the text as written.
    """
    if len(text) > EMBEDDED_MAX_CHARS or not _DOCUMENT_START.match(text):
        return []
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return []
    return list(iter_strings(document)) if isinstance(document, dict | list) else []
