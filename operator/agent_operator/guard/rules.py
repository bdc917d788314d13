"""Load and compile the rules data file (``rules.yaml``).

Each rule names the view it matches (``words``, ``text`` or ``raw``), a
score in (0, 1], a regex and trigger keywords. A rule runs only when one of
its keywords is a token of the text (or, for keywords in scripts written
without spaces, a substring) and, if it lists ``requires``, one of those too,
so benign text costs one set intersection per call.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

VIEWS = ("words", "text", "raw")


# eq=False: rules are compared and hashed by identity, which keeps the
# per-call set of candidate rules cheap.
@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One compiled detection rule."""

    id: str
    family: str
    score: float
    view: str
    regex: re.Pattern[str]
    keywords: frozenset[str] = field(default_factory=frozenset)
    # Keywords in scripts without word spacing (CJK): matched as substrings.
    substrings: tuple[str, ...] = ()
    # A second word list: when set, one of these must be present too.
    requires: frozenset[str] = field(default_factory=frozenset)
    # Runs only on text where normalising found obfuscation (for patterns
    # over words glued together by "i g n o r e p r e v i o u s").
    obfuscated: bool = False


@dataclass(frozen=True, slots=True)
class RuleSet:
    """All rules plus the scores of the signals that normalising raises."""

    rules: tuple[Rule, ...]
    signals: dict[str, float]


def _unspaced(keyword: str) -> bool:
    return any(
        unicodedata.name(c, "").startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI"))
        for c in keyword
    )


def compile_pattern(pattern: str, view: str, where: str) -> re.Pattern[str]:
    """Compile ``pattern`` for ``view``; raise ``ValueError`` naming it."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}: invalid regex {pattern!r}: {exc}") from exc


def _rule(raw: dict[str, Any], where: str) -> Rule:
    missing = {"id", "family", "score", "pattern"} - raw.keys()
    if missing:
        raise ValueError(f"{where}: missing {sorted(missing)}")
    view = str(raw.get("view", "words"))
    if view not in VIEWS:
        raise ValueError(f"{where}: view must be one of {VIEWS}, not {view!r}")
    score = float(raw["score"])
    if not 0.0 < score <= 1.0:
        raise ValueError(f"{where}: score must be in (0, 1], not {score}")
    keywords = [str(k).casefold() for k in raw.get("keywords", ())]
    return Rule(
        id=str(raw["id"]),
        family=str(raw["family"]),
        score=score,
        view=view,
        regex=compile_pattern(str(raw["pattern"]), view, f"{where} ({raw['id']})"),
        keywords=frozenset(k for k in keywords if not _unspaced(k)),
        substrings=tuple(k for k in keywords if _unspaced(k)),
        requires=frozenset(str(k).casefold() for k in raw.get("requires", ())),
        obfuscated=bool(raw.get("obfuscated", False)),
    )


def parse_rules(documents: list[dict[str, Any]], source: str = "rules") -> RuleSet:
    """Validate and compile decoded rules documents into one set.

    Rule ids must be unique across all documents; a later document's
    ``signals`` override an earlier one's.
    """
    raws = [raw for document in documents for raw in document.get("rules") or []]
    rules = tuple(_rule(raw, f"{source}: rule #{n}") for n, raw in enumerate(raws))
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise ValueError(f"{source}: duplicate rule id {rule.id!r}")
        seen.add(rule.id)
    signals: dict[str, float] = {}
    for document in documents:
        signals.update({str(k): float(v) for k, v in (document.get("signals") or {}).items()})
    return RuleSet(rules=rules, signals=signals)


def _document(text: str) -> dict[str, Any]:
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise ValueError("rules: expected a mapping with a 'rules' list")
    return document


def shipped_rules_text() -> str:
    """The text of the ``rules.yaml`` shipped with this package."""
    return resources.files(__package__).joinpath("rules.yaml").read_text("utf-8")


def load_rules(text: str | None = None, *, extend: bool = False) -> RuleSet:
    """Compile the shipped rules, the rules in ``text``, or (``extend=True``)
    the shipped rules followed by those in ``text``.

    Raises ``ValueError`` on a malformed document, an invalid regex or a
    duplicate rule id.
    """
    if text is None:
        return parse_rules([_document(shipped_rules_text())])
    documents = [_document(text)]
    if extend:
        documents.insert(0, _document(shipped_rules_text()))
    return parse_rules(documents)
