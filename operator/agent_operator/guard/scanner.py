"""The prompt guard: normalise, decode, match rules, score.

``PromptGuard.scan`` is a pure function of its input and the rules compiled
at construction; it holds no per-call state, so one instance serves every
request of the gateway concurrently.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, count
from operator import or_
from typing import Any

import re2

from agent_operator.guard.decode import decode_payloads
from agent_operator.guard.jsonpath import Step, collect, embedded_strings, parse_path
from agent_operator.guard.model import FAMILY, RULE_ID, LinearModel, load_model
from agent_operator.guard.normalise import Views, ascii_words, normalise
from agent_operator.guard.prefilter import Screens
from agent_operator.guard.quoting import unquoted
from agent_operator.guard.rules import Rule, RuleSet, load_rules

# Tuned on the dev split of bench/guard_data (see docs/guard.md).
DEFAULT_THRESHOLD = 0.45
# Decoded payloads are scanned again, once more inside them at most: enough
# for base64-of-URL-encoding, bounded against decompression-bomb-like nesting.
_MAX_DEPTH = 2
_LONG_TOKEN = 16
# scan_json batches its plain strings from this many strings on, separated
# by a control character that no word contains.
_BATCH_MIN = 64
# scan_json judges at most this many strings one by one (see scan_json).
_JUDGED_ALONE = 1000
_SEPARATOR = "\x80"
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


_CLEAN = Verdict(flagged=False, score=0.0, findings=())


def _score(verdict: Verdict) -> float:
    return verdict.score


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
        self._screens = Screens.build(ruleset.rules)
        # The first search of a pattern pays one-off setup costs inside the
        # regex engine; pay them here rather than on the first request.
        for rule in ruleset.rules:
            rule.regex.search("warm up")
        for _, regex in self._extras:
            regex.search("warm up")

    def scan(self, text: str) -> Verdict:
        """Scan one text (any length); ``flagged`` when score >= threshold."""
        return self._judge(text)

    def scan_json(self, body: object, paths: Sequence[str] | None = None) -> Verdict:
        """Scan the strings of a decoded JSON body.

        By default every string value; ``paths`` (``messages[*].content``,
        ``input``, ...) restricts the scan to what they select. A malformed
        path raises ``ValueError``.
        """
        parsed = None if paths is None else _parse_paths(tuple(paths))
        texts = collect(body, parsed)
        # A string that is itself a JSON document is also read as the model
        # reads it, escapes decoded (tools return JSON as text).
        texts += [inner for text in texts for inner in embedded_strings(text)]
        # Equal strings scan alike ("role": "user" in every message).
        plain: dict[str, Finding] = {}
        rest = self._scan_plain(list(dict.fromkeys(texts)), plain)
        # Each string is judged on its own (its rules weighed with its own
        # words), the body by its worst string. Past _JUDGED_ALONE strings
        # that need a full scan, they are scanned as one text instead: a few
        # microseconds less per string, and stricter (their findings add up).
        if len(rest) > _JUDGED_ALONE:
            verdicts = [self._judge("\n".join(rest))]
        else:
            verdicts = [self._judge(text) for text in rest]
        if plain:
            verdicts.append(self._verdict(plain))
        return max(verdicts, key=_score, default=_CLEAN)

    def _judge(self, text: str) -> Verdict:
        """One text's verdict. Flagged text that discusses attacks it quotes
        (an advisory, a blog post on prompt injection) is judged again with
        the quotes blanked out (guard/quoting.py)."""
        findings: dict[str, Finding] = {}
        self._scan(text, findings, 0)
        verdict = self._verdict(findings)
        if verdict.flagged and (outside := unquoted(text)) is not None:
            findings = {}
            self._scan(outside, findings, 0)
            reported = self._verdict(findings)
            if not reported.flagged:
                return reported
        return verdict

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
            superset = self._screens.superset(rule)
            if superset is None or superset.search(joined[rule.view].encode()) is not None:
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
        where the regex search may start (see prefilter.py)."""
        return self._screens.screened(views, rules)

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


def _may_hide_payload(raw: str, views: Views) -> bool:
    # Cheap gate before the decoding regexes: encoded payloads show up as
    # long tokens, percent escapes or backslash escapes.
    return "%" in raw or "\\" in raw or max(map(len, views.tokens), default=0) >= _LONG_TOKEN


def _add(findings: dict[str, Finding], finding: Finding) -> None:
    old = findings.get(finding.rule)
    if old is None or old.score < finding.score:
        findings[finding.rule] = finding
