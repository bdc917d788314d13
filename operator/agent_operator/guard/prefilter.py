"""RE2 screening: which rules can match a text at all, found in one pass.

Python's re tries every offset of the text for every rule, which costs
10 to 90 ns per character and rule: a megabyte of text that raises an
obfuscation signal (so that every rule runs) took a second. Each rule is
therefore also translated into an RE2 pattern that matches a superset of
what the Python regex matches (lookarounds and word boundaries dropped,
character classes widened outside ASCII). RE2's FilteredRE2 finds the
literal atoms of all those patterns in one linear pass; a rule whose
superset cannot match is skipped, and one that can is searched with
Python's re from where its superset first matched. Skipping is sound: if
the Python regex matches, so does its superset, no earlier than it.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from agent_operator.guard.normalise import Views
from agent_operator.guard.rules import VIEWS, Rule

# re's own parser (no public API), so that the RE2 translation below reads a
# pattern exactly as re compiles it.
sre_parse: Any = importlib.import_module("re._parser")
sre: Any = importlib.import_module("re._constants")

# From this length on, a rule that RE2's atoms let through is also searched
# with its RE2 superset before Python's re (shorter texts: atoms only).
_SCREEN_MIN_CHARS = 2048


_CATEGORIES = {
    sre.CATEGORY_WORD: r"\w",
    sre.CATEGORY_NOT_WORD: r"\W",
    sre.CATEGORY_DIGIT: r"\d",
    sre.CATEGORY_NOT_DIGIT: r"\D",
    sre.CATEGORY_SPACE: r"\s",
    sre.CATEGORY_NOT_SPACE: r"\S",
}
# Exact within ASCII (asked of Python's own re); outside ASCII every
# category is widened to every character.
_ASCII_MEMBERS = {
    category: frozenset(c for c in range(128) if re.match(pattern, chr(c)))
    for category, pattern in _CATEGORIES.items()
}
_NON_ASCII = ((0x80, 0xD7FF), (0xE000, 0x10FFFF))  # UTF-8 has no surrogates
_UNSUPPORTED_FLAGS = re.IGNORECASE | re.LOCALE | re.ASCII
_RE2_MAX_REPEAT = 1000


class _Untranslatable(ValueError):
    """A construct the superset translation does not handle: run the rule always."""


def _re2_char(code: int) -> str:
    char = chr(code)
    return char if char.isascii() and char.isalnum() else f"\\x{{{code:x}}}"


def _re2_class(ascii_members: set[int], others: Sequence[tuple[int, int]]) -> str:
    spans: list[tuple[int, int]] = []
    for code in sorted(ascii_members):
        if spans and spans[-1][1] == code - 1:
            spans[-1] = (spans[-1][0], code)
        else:
            spans.append((code, code))
    for low, high in others:
        for lo, hi in _NON_ASCII:
            if max(low, lo) <= min(high, hi):
                spans.append((max(low, lo), min(high, hi)))
    if not spans:
        raise _Untranslatable("empty character class")
    parts = (_re2_char(a) if a == b else f"{_re2_char(a)}-{_re2_char(b)}" for a, b in spans)
    return "[" + "".join(parts) + "]"


def _superset_class(items: Sequence[tuple[Any, Any]]) -> str:
    members: set[int] = set()
    others: list[tuple[int, int]] = []
    negate = widen = False
    for op, arg in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            members.add(arg) if arg < 128 else others.append((arg, arg))
        elif op is sre.RANGE:
            members.update(range(arg[0], min(arg[1], 127) + 1))
            if arg[1] >= 128:
                others.append((max(arg[0], 128), arg[1]))
        elif op is sre.CATEGORY and arg in _ASCII_MEMBERS:
            members |= _ASCII_MEMBERS[arg]
            widen = True
        else:
            raise _Untranslatable(str(op))
    if negate:
        return _re2_class(set(range(128)) - members, _NON_ASCII)
    return _re2_class(members, _NON_ASCII if widen else others)


def _superset_seq(items: Sequence[tuple[Any, Any]], flags: int, leading: bool = False) -> str:
    out = []
    for n, (op, arg) in enumerate(items):
        if (
            op is sre.AT
            and arg is sre.AT_BOUNDARY
            and leading
            and _starts_with_word(items[n + 1 :])
        ):
            # \b before the first character of a match that starts with a
            # word character: the character before is no ASCII word
            # character (or there is none). Consumed, so the superset starts
            # one character early, which the start offset allows.
            out.append("(?:(?m:^)|[^0-9A-Za-z_])")
            leading = False
            continue
        elif op is sre.BRANCH and leading:
            out.append("(?:" + "|".join(_superset_seq(alt, flags, True) for alt in arg[1]) + ")")
        elif op is sre.SUBPATTERN and leading and not (flags | arg[1]) & _UNSUPPORTED_FLAGS:
            out.append("(?:" + _superset_seq(arg[3], (flags | arg[1]) & ~arg[2], True) + ")")
        else:
            out.append(_superset_node(op, arg, flags))
        # Still at the start after zero-width items only.
        leading = leading and op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT)
    return "".join(out)


def _starts_with_word(items: Sequence[tuple[Any, Any]]) -> bool:
    """Whether every match of ``items`` starts with an ASCII word character."""
    if not items:
        return False
    op, arg = items[0]
    if op is sre.LITERAL:
        return arg < 128 and (chr(arg).isalnum() or arg == ord("_"))
    if op is sre.BRANCH:
        return all(_starts_with_word(alt) for alt in arg[1])
    if op is sre.SUBPATTERN:
        return _starts_with_word(arg[3])
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        return bool(arg[0] >= 1 and _starts_with_word(arg[2]))
    return False


def _superset_node(op: Any, arg: Any, flags: int) -> str:
    if op is sre.LITERAL:
        return _re2_char(arg)
    if op is sre.NOT_LITERAL:
        return _re2_class(set(range(128)) - {arg}, _NON_ASCII)
    if op is sre.ANY:
        return "(?s:.)" if flags & re.DOTALL else "[^\\n]"
    if op is sre.IN:
        return _superset_class(arg)
    if op is sre.CATEGORY:
        return _superset_class([(op, arg)])
    if op is sre.BRANCH:
        return "(?:" + "|".join(_superset_seq(alt, flags) for alt in arg[1]) + ")"
    if op is sre.SUBPATTERN:
        inner = (flags | arg[1]) & ~arg[2]
        if inner & _UNSUPPORTED_FLAGS:
            raise _Untranslatable("flags")
        return "(?:" + _superset_seq(arg[3], inner) + ")"
    if op is sre.ATOMIC_GROUP:
        return "(?:" + _superset_seq(arg, flags) + ")"
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        low, high, body = arg
        inner = "(?:" + _superset_seq(body, flags) + ")"
        if low > _RE2_MAX_REPEAT:
            return inner + "*"
        if high is sre.MAXREPEAT or high > _RE2_MAX_REPEAT:
            return f"{inner}{{{low},}}"
        return f"{inner}{{{low},{high}}}"
    if op is sre.AT and arg in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING):
        # Line starts: also true where strings joined by newlines begin.
        return "(?m:^)"
    if op is sre.AT and arg in (sre.AT_END, sre.AT_END_STRING):
        return "(?m:$)"
    if op in (sre.ASSERT, sre.ASSERT_NOT, sre.AT):
        # Lookarounds and word boundaries only ever forbid a match: dropped.
        return ""
    if op is sre.GROUPREF:
        return "(?s:.)*"
    if op is sre.GROUPREF_EXISTS:
        _, yes, no = arg
        return f"(?:{_superset_seq(yes, flags)}|{_superset_seq(no, flags) if no else ''})"
    raise _Untranslatable(str(op))


def superset_pattern(regex: re.Pattern[str]) -> str:
    """An RE2 pattern matching every string ``regex`` matches (and more).

    Raises ``ValueError`` for what it cannot translate (case-insensitive
    patterns among them: Python and RE2 fold case differently).
    """
    if regex.flags & _UNSUPPORTED_FLAGS:
        raise _Untranslatable("flags")
    tree = sre_parse.parse(regex.pattern, regex.flags)
    return _superset_seq(list(tree), tree.state.flags, leading=True)


@dataclass(frozen=True, slots=True)
class _Screen:
    """The RE2 supersets of the rules of one view."""

    filter: Any
    # rule -> (its index in the filter, its superset compiled alone)
    supersets: dict[Rule, tuple[int, Any]]


class Screens:
    """The RE2 supersets of a rule set, by view: ``Screens.build(rules)``."""

    def __init__(self, by_view: dict[str, _Screen]) -> None:
        self._by_view = by_view

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def build(rules: tuple[Rule, ...]) -> Screens:
        """Translate and compile ``rules``; a rule that cannot be translated
        is left out (``screened`` then always lets it through)."""
        # Cached per rule set (rules hash by identity): building costs ~0.1 s.
        options = re2.Options()
        options.log_errors = False
        by_view: dict[str, _Screen] = {}
        for view in VIEWS:
            screen = _Screen(re2.Filter(), {})
            for rule in rules:
                if rule.view != view:
                    continue
                try:
                    pattern = superset_pattern(rule.regex)
                    compiled = re2.compile(pattern, options)
                    screen.supersets[rule] = (screen.filter.Add(pattern, options), compiled)
                except (ValueError, re2.error):
                    continue  # not screened: always searched with re
            if screen.supersets:
                screen.filter.Compile()
                by_view[view] = screen
        return Screens(by_view)

    def superset(self, rule: Rule) -> Any | None:
        """The compiled RE2 superset of ``rule`` (searches UTF-8 bytes), or
        None when it has none."""
        screen = self._by_view.get(rule.view)
        entry = screen.supersets.get(rule) if screen is not None else None
        return entry[1] if entry is not None else None

    def screened(self, views: Views, rules: list[Rule]) -> Iterator[tuple[Rule, str, int]]:
        """The ``rules`` that can match, in order, each with its view and the
        offset where the regex search may start."""
        if not rules:
            return
        # On a short text the atoms alone rule out most candidates; one
        # more RE2 search per rule would cost more than it saves.
        confirm = len(views.text) >= _SCREEN_MIN_CHARS
        possible: dict[str, tuple[bytes, set[int]] | None] = {}
        for rule in rules:
            target: str = getattr(views, rule.view)
            screen = self._by_view.get(rule.view)
            entry = screen.supersets.get(rule) if screen is not None else None
            if screen is None or entry is None:
                yield rule, target, 0
                continue
            if rule.view not in possible:
                possible[rule.view] = _possible(screen, target)
            found = possible[rule.view]
            if found is None:
                yield rule, target, 0
                continue
            data, indexes = found
            index, superset = entry
            if index not in indexes:
                continue
            if not confirm:
                yield rule, target, 0
                continue
            match = superset.search(data)
            if match is not None:
                start = match.start()
                if len(data) != len(target):
                    start = len(data[:start].decode())
                yield rule, target, start


def _possible(screen: _Screen, target: str) -> tuple[bytes, set[int]] | None:
    """``target`` as UTF-8 and the filter indexes of the rules that may match."""
    try:
        data = target.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate: RE2 reads only valid UTF-8, so no screening
    return data, set(screen.filter.Match(data, True) or ())
