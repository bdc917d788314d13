"""The prompt guard: normalise, decode, match rules, score.

``PromptGuard.scan`` is a pure function of its input and the rules compiled
at construction; it holds no per-call state, so one instance serves every
request of the gateway concurrently.
"""

from __future__ import annotations

import bisect
import functools
import importlib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, count
from operator import or_
from typing import Any

import re2

from agent_operator.guard.decode import decode_payloads
from agent_operator.guard.jsonpath import Step, collect, parse_path
from agent_operator.guard.model import FAMILY, RULE_ID, LinearModel, load_model
from agent_operator.guard.normalise import Views, ascii_words, normalise
from agent_operator.guard.rules import VIEWS, Rule, RuleSet, load_rules

# re's own parser (no public API), so that the RE2 translation below reads a
# pattern exactly as re compiles it.
sre_parse: Any = importlib.import_module("re._parser")
sre: Any = importlib.import_module("re._constants")

# Tuned on the dev split of bench/guard_data (see docs/guard.md).
DEFAULT_THRESHOLD = 0.45
# Decoded payloads are scanned again, once more inside them at most: enough
# for base64-of-URL-encoding, bounded against decompression-bomb-like nesting.
_MAX_DEPTH = 2
_LONG_TOKEN = 16
# scan_json batches its plain strings from this many strings on, separated
# by a control character that no word contains.
_BATCH_MIN = 64
_SEPARATOR = "\x80"
# From this length on, a rule that RE2's atoms let through is also searched
# with its RE2 superset before Python's re (shorter texts: atoms only).
_SCREEN_MIN_CHARS = 2048
# A rule score (or noisy-OR of several) this high is never overruled by the
# learned scorer: literal attack shapes stay blocked whatever the words say.
_STRONG = 0.9


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that matched: its id (e.g. ``override.ignore-previous``)."""

    rule: str
    family: str
    score: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of a scan; ``score`` is in [0, 1]."""

    flagged: bool
    score: float
    findings: tuple[Finding, ...]

    @property
    def rule(self) -> str | None:
        """The highest-scoring rule id, for error messages."""
        if not self.findings:
            return None
        return max(self.findings, key=lambda f: f.score).rule


@functools.cache
def _default_rules() -> RuleSet:
    return load_rules()


@functools.lru_cache(maxsize=256)
def _parse_paths(paths: tuple[str, ...]) -> tuple[tuple[Step, ...], ...]:
    return tuple(parse_path(p) for p in paths)


def _combine(findings: dict[str, Finding]) -> float:
    # Noisy-OR: independent weak signals add up, one strong rule suffices.
    # Rounded so that a single rule of score 0.45 meets a threshold of 0.45.
    return round(1.0 - math.prod(1.0 - f.score for f in findings.values()), 9)


# --- RE2 screening: which rules can match at all, found in one pass. ---
#
# Python's re tries every offset of the text for every rule, which costs
# 10 to 90 ns per character and rule: a megabyte of text that raises an
# obfuscation signal (so that every rule runs) took a second. Each rule is
# therefore also translated into an RE2 pattern that matches a superset of
# what the Python regex matches (lookarounds and word boundaries dropped,
# character classes widened outside ASCII). RE2's FilteredRE2 finds the
# literal atoms of all those patterns in one linear pass; a rule whose
# superset cannot match is skipped, and one that can is searched with
# Python's re from where its superset first matched. Skipping is sound: if
# the Python regex matches, so does its superset, no earlier than it.

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


@functools.lru_cache(maxsize=16)
def _screens(rules: tuple[Rule, ...]) -> dict[str, _Screen]:
    # Cached per rule set (rules hash by identity): building costs ~0.1 s.
    options = re2.Options()
    options.log_errors = False
    screens: dict[str, _Screen] = {}
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
            screens[view] = screen
    return screens


def compile_extra(pattern: str) -> Any:
    """A user pattern compiled with RE2: matching is linear in the text, so no
    pattern (``(a+)+$``) can stall the event loop by backtracking."""
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"invalid extra pattern {pattern!r} (RE2 syntax): {reason}") from None


class PromptGuard:
    """Scores text for prompt injection against the shipped rules."""

    def __init__(
        self,
        extra_patterns: Sequence[str] = (),
        threshold: float = DEFAULT_THRESHOLD,
        rules: RuleSet | None = None,
        *,
        learned: bool = True,
        model: LinearModel | None = None,
    ) -> None:
        """Compile everything once.

        ``extra_patterns`` are RE2 regexes matched case-insensitively against
        the normalised text; each is a rule ``extra.N`` of score 1. An invalid
        one (or one RE2 does not support) raises ``ValueError`` naming it.
        ``rules`` replaces the shipped set.
        ``learned=False`` turns the learned scorer off (rules only); ``model``
        replaces the shipped one.
        """
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], not {threshold}")
        ruleset = rules if rules is not None else _default_rules()
        extras = [(f"extra.{n}", compile_extra(p)) for n, p in enumerate(extra_patterns)]
        self.threshold = threshold
        self._rules = ruleset.rules
        self._signals = ruleset.signals
        self._extras = tuple(extras)
        self._model = (model or load_model()) if learned else None
        self._always = tuple(r for r in ruleset.rules if not r.keywords and not r.substrings)
        index: dict[str, list[Rule]] = {}
        for rule in ruleset.rules:
            for keyword in () if rule.obfuscated else rule.keywords:
                index.setdefault(keyword, []).append(rule)
        self._index = {k: tuple(v) for k, v in index.items()}
        self._keywords = frozenset(index)
        # One alternation finds every CJK keyword present in a single pass.
        by_substring: dict[str, list[Rule]] = {}
        for rule in ruleset.rules:
            for sub in () if rule.obfuscated else rule.substrings:
                by_substring.setdefault(sub, []).append(rule)
        self._by_substring = {k: tuple(v) for k, v in by_substring.items()}
        self._substring_re = (
            re.compile("|".join(map(re.escape, sorted(by_substring, key=len, reverse=True))))
            if by_substring
            else None
        )
        self._order = {rule.id: n for n, rule in enumerate(ruleset.rules)}
        self._rank = {rule: n for n, rule in enumerate(ruleset.rules)}
        self._always_plain = tuple(r for r in self._always if not r.obfuscated)
        self._screens = _screens(ruleset.rules)
        # The first search of a pattern pays one-off setup costs inside the
        # regex engine; pay them here rather than on the first request.
        for rule in ruleset.rules:
            rule.regex.search("warm up")
        for _, regex in self._extras:
            regex.search("warm up")

    def scan(self, text: str) -> Verdict:
        """Scan one text (any length); ``flagged`` when score >= threshold."""
        findings: dict[str, Finding] = {}
        self._scan(text, findings, 0)
        return self._verdict(findings)

    def scan_json(self, body: object, paths: Sequence[str] | None = None) -> Verdict:
        """Scan the strings of a decoded JSON body.

        By default every string value; ``paths`` (``messages[*].content``,
        ``input``, ...) restricts the scan to what they select. A malformed
        path raises ``ValueError``.
        """
        parsed = None if paths is None else _parse_paths(tuple(paths))
        findings: dict[str, Finding] = {}
        # Equal strings scan alike ("role": "user" in every message).
        texts = list(dict.fromkeys(collect(body, parsed)))
        for text in self._scan_plain(texts, findings):
            self._scan(text, findings, 0)
        return self._verdict(findings)

    def _scan_plain(self, texts: list[str], findings: dict[str, Finding]) -> list[str]:
        """Scan the plain texts among ``texts`` in one batch; return the others.

        A JSON body may hold 100,000 short strings, and a full scan costs a
        few microseconds of Python per string. A plain text (ASCII, nothing
        for normalising to undo, nothing to decode, no rule keyword) can only
        contribute its model score, so those scores are computed together:
        the findings of scanning each alone. The texts returned (a keyword,
        a long token) get the full scan.
        """
        if len(texts) < _BATCH_MIN:
            return texts
        whole = "".join(texts)
        if not whole.isascii() or "%" in whole or "\\" in whole:
            return texts
        tokens = ascii_words(texts, _SEPARATOR)
        if tokens is None or not self._always_quiet(texts, tokens):
            return texts
        # Which texts hold a keyword or a long token: tokens are mapped to
        # their text by the separators before them.
        separators = list(compress(count(), map(_SEPARATOR.__eq__, tokens)))
        odd = map(
            or_, map(self._keywords.__contains__, tokens), map(_LONG_TOKEN.__le__, map(len, tokens))
        )
        rest = {bisect.bisect_left(separators, n) for n in compress(count(), odd)}
        if self._model is not None:
            # Texts left for the full scan are scored twice: the maximum holds.
            p = self._model.max_probability(tokens, _SEPARATOR)
            if p is not None:
                _add(findings, Finding(RULE_ID, FAMILY, p))
        return [texts[n] for n in sorted(rest)]

    def _always_quiet(self, texts: list[str], tokens: list[str]) -> bool:
        """Whether no keyword-less rule can match any of ``texts`` (plain,
        with all their ``tokens``): each rule's RE2 superset, on the texts
        joined by newlines, finds nothing (a superset matches wherever the
        rule matches, and its anchors are line anchors)."""
        rules = self._always_plain
        if not rules:
            return True
        joined = {
            "raw": "\n".join(texts),
            "text": "\n".join(texts).lower(),
            "words": " ".join(tokens).replace(f" {_SEPARATOR} ", "\n"),
        }
        for rule in rules:
            screen = self._screens.get(rule.view)
            entry = screen.supersets.get(rule) if screen is not None else None
            if entry is None or entry[1].search(joined[rule.view].encode()) is not None:
                return False
        return True

    def _verdict(self, findings: dict[str, Finding]) -> Verdict:
        # The learned score already weighs every word: it is not one more
        # independent signal, so it does not join the noisy-OR. It decides
        # only when the rules alone do not flag (then it alone is listed), so
        # that clients see the rule that matched whenever there is one.
        learned = findings.pop(RULE_ID, None)
        score = _combine(findings) if findings else 0.0
        if learned is not None and self._model is not None:
            p = round(learned.score, 9)
            if score < _STRONG and p < self._model.veto:
                # Only weak rules matched and the model is confident the
                # words are benign ("run the tests in debug mode"): overruled.
                score = 0.0
            # The model was calibrated as a detector at the threshold (on
            # dev): below it, its probability says nothing and is left out.
            if p >= self.threshold and score < self.threshold:
                findings[RULE_ID] = learned
                score = p
        if len(findings) < 2:
            ordered = tuple(findings.values())
        else:
            # Ties go to the rule listed first in the rules file.
            last = len(self._order)
            ordered = tuple(
                sorted(
                    findings.values(),
                    key=lambda f: (-f.score, self._order.get(f.rule, last), f.rule),
                )
            )
        return Verdict(flagged=score >= self.threshold, score=score, findings=ordered)

    def _candidates(self, views: Views, present: set[str]) -> list[Rule]:
        if views.signals:
            # Obfuscation may have broken the keywords: run every rule.
            return list(self._rules)
        hits: set[Rule] = set(self._always_plain)
        for keyword in self._keywords.intersection(present):
            hits.update(self._index[keyword])
        if self._substring_re is not None and not views.text.isascii():
            for found in set(self._substring_re.findall(views.words)):
                hits.update(self._by_substring[found])
        if any(r.requires for r in hits):
            hits = {r for r in hits if not r.requires or not r.requires.isdisjoint(present)}
        return sorted(hits, key=self._rank.__getitem__)

    def _screened(self, views: Views, rules: list[Rule]) -> Iterator[tuple[Rule, str, int]]:
        """The ``rules`` that can match, each with its view and the offset
        where the regex search may start (see "RE2 screening" above)."""
        if not rules:
            return
        # On a short text the atoms alone rule out most candidates; one
        # more RE2 search per rule would cost more than it saves.
        confirm = len(views.text) >= _SCREEN_MIN_CHARS
        possible: dict[str, tuple[bytes, set[int]] | None] = {}
        for rule in rules:
            target: str = getattr(views, rule.view)
            screen = self._screens.get(rule.view)
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

    def _scan(self, raw: str, findings: dict[str, Finding], depth: int) -> None:
        views = normalise(raw)
        # One set of the words, shared by rule selection and the model.
        present = set(views.tokens)
        for rule, target, start in self._screened(views, self._candidates(views, present)):
            if rule.regex.search(target, start):
                _add(findings, Finding(rule.id, rule.family, rule.score))
        for rule_id, regex in self._extras:
            if regex.search(views.text):
                _add(findings, Finding(rule_id, "extra", 1.0))
        for signal in views.signals:
            self._signal(findings, signal)
        if self._model is not None and views.tokens:
            # Kept as the highest probability over all texts scanned;
            # _verdict lists it only when it decides the verdict.
            p = self._model.probability(views.tokens, present)
            _add(findings, Finding(RULE_ID, FAMILY, p))
        if depth >= _MAX_DEPTH or not _may_hide_payload(raw, views):
            return
        for decoded in decode_payloads(raw):
            inner: dict[str, Finding] = {}
            self._scan(decoded, inner, depth + 1)
            # The model's probability is there for every text: it counts as
            # something hidden only when it would flag.
            if any(
                f.family != "obfuscation" and (f.rule != RULE_ID or f.score >= self.threshold)
                for f in inner.values()
            ):
                self._signal(findings, "encoded-payload")
            for finding in inner.values():
                _add(findings, finding)

    def _signal(self, findings: dict[str, Finding], signal: str) -> None:
        score = self._signals.get(signal, 0.0)
        if score > 0.0:
            _add(findings, Finding(f"obfuscation.{signal}", "obfuscation", score))


def _possible(screen: _Screen, target: str) -> tuple[bytes, set[int]] | None:
    """``target`` as UTF-8 and the filter indexes of the rules that may match."""
    try:
        data = target.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate: RE2 reads only valid UTF-8, so no screening
    return data, set(screen.filter.Match(data, True) or ())


def _may_hide_payload(raw: str, views: Views) -> bool:
    # Cheap gate before the decoding regexes: encoded payloads show up as
    # long tokens, percent escapes or backslash escapes.
    return "%" in raw or "\\" in raw or max(map(len, views.tokens), default=0) >= _LONG_TOKEN


def _add(findings: dict[str, Finding], finding: Finding) -> None:
    old = findings.get(finding.rule)
    if old is None or old.score < finding.score:
        findings[finding.rule] = finding
