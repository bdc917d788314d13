"""Turn raw text into the views the rules match against.

Three views; all but ``raw`` are lower-case:

* ``raw``: Unicode-normalised like ``text`` but with its case, for rules
  that look for SHOUTED directives.
* ``text``: Unicode-normalised (tag characters decoded, zero-width and bidi
  controls removed, NFKC, homoglyphs folded) but with punctuation and line
  breaks intact, for delimiter and fake tool-call rules.
* ``words``: ``text`` with leetspeak digits folded to letters, punctuation
  turned into single spaces and spaced-out letters ("i g n o r e") joined, for
  the language rules.

ASCII input skips the Unicode steps, which keeps the common case cheap.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from agent_operator.guard.confusables import CONFUSABLES

# Zero-width, joiner, word-joiner, BOM, soft hyphen, Mongolian vowel separator
# and the bidi controls: invisible, so an attacker can split words with them.
_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_STRIP = str.maketrans(dict.fromkeys(_INVISIBLE + _BIDI))
_HIDDEN = re.compile("[" + _INVISIBLE + _BIDI + "]")
# Zero-width characters that have no business inside ordinary words (ZWJ/ZWNJ
# do: emoji sequences, Persian, Indic scripts).
_SUSPICIOUS_INVISIBLE = frozenset("\u200b\u2060\ufeff\u180e\u2061\u2062\u2063\u2064")
_BIDI_SET = frozenset(_BIDI)

# Unicode "tag" characters U+E0020..E007E mirror ASCII and render as nothing:
# the "ASCII smuggling" trick. Decode them instead of dropping them.
_TAGS: dict[int, str | None] = {cp: chr(cp - 0xE0000) for cp in range(0xE0020, 0xE007F)}
_TAGS.update({0xE0001: None, 0xE007F: None})

_PUNCT = "!\"#%&'()*+,-./:;<=>?[\\]^_`{}~|"
# Non-ASCII punctuation that NFKC leaves alone (quotes, dashes, CJK marks).
_UNI_PUNCT = re.compile("[\u00ab\u00bb\u2010-\u201f\u2026\u3001-\u3003\u3008-\u3011]")
# Leetspeak folds every digit that looks like a letter; it also mangles real
# numbers, which is harmless because no rule looks for numbers in this view.
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s"}
# A byte table: bytes.translate is a plain C loop, str.translate is not, and
# UTF-8 bytes >= 0x80 pass through untouched.
_WORDS_BYTES = bytes(
    ord(" ") if chr(b) in _PUNCT else ord(_LEET.get(chr(b), chr(b))) for b in range(128)
) + bytes(range(128, 256))

# Three or more single letters separated by single spaces: "i g n o r e".
# Matched before whitespace is collapsed, so "i g n o r e  a l l" (words
# two spaces apart) keeps its word boundary.
_SPACED = re.compile(r"(?<!\w)\w(?: \w){2,}(?!\w)")
_SINGLE_LETTERS = frozenset("bcdfghjklmnopqrstuvwxyz")
# Tokens holding at least one look-alike letter: the only ones worth folding.
# Anchored at word starts, so a long word costs one pass, not one per offset.
_CONFUSABLE_TOKEN = re.compile(
    "(?<!\\w)\\w*[" + re.escape("".join(chr(c) for c in CONFUSABLES)) + "]\\w*"
)
_CONFUSABLE_CHAR = re.compile("[" + re.escape("".join(chr(c) for c in CONFUSABLES)) + "]")
_TAG_CHAR = re.compile("[\U000e0000-\U000e007f]")
_LATIN = re.compile(r"[a-zA-Z]")


@dataclass(frozen=True, slots=True)
class Views:
    """The normalised views of one text and what normalising revealed."""

    raw: str
    text: str
    words: str
    tokens: list[str]
    signals: tuple[str, ...]


def _fold_homoglyphs(text: str) -> tuple[str, bool]:
    """Map look-alike letters to Latin inside mixed-script tokens.

    A token that mixes scripts ("ignore" spelt with Cyrillic i, o, e) is
    folded. A token made only of look-alikes (Cyrillic "pop") is folded only in
    mostly-Latin text: in Russian or Greek prose it is a real word.
    """
    found = False
    latin_text = len(text.encode("ascii", "ignore")) * 2 > len(text)

    def fold(match: re.Match[str]) -> str:
        nonlocal found
        token = match.group()
        if token.isascii():
            return token
        folded = token.translate(CONFUSABLES)
        if folded == token:
            return token
        if _LATIN.search(token) or (latin_text and folded.isascii()):
            found = True
            return folded
        return token

    return _CONFUSABLE_TOKEN.sub(fold, text), found


def _unicode_text(raw: str) -> tuple[str, str, list[str]]:
    signals: list[str] = []
    text = raw
    if _TAG_CHAR.search(text):
        signals.append("tag-characters")
        text = text.translate(_TAGS)
    if _HIDDEN.search(text):
        chars = set(text)
        if chars & _SUSPICIOUS_INVISIBLE:
            signals.append("invisible-characters")
        if chars & _BIDI_SET:
            signals.append("bidi-controls")
        text = text.translate(_STRIP)
    cased = unicodedata.normalize("NFKC", text)
    if not cased.isascii() and _CONFUSABLE_CHAR.search(cased):
        cased, mixed = _fold_homoglyphs(cased)
        if mixed:
            signals.append("homoglyphs")
    return cased, cased.casefold(), signals


def _join_spaced(match: re.Match[str]) -> str:
    return match.group().replace(" ", "")


def normalise(raw: str) -> Views:
    """Build the ``text`` and ``words`` views of ``raw`` (any length)."""
    signals: list[str] = []
    if raw.isascii():
        cased, text = raw, raw.lower()
    else:
        cased, text, signals = _unicode_text(raw)
    spaced = text.encode("utf-8").translate(_WORDS_BYTES).decode("utf-8")
    if not spaced.isascii() and _UNI_PUNCT.search(spaced):
        spaced = _UNI_PUNCT.sub(" ", spaced)
    # A list, not a set: callers intersect their keyword sets with it, which
    # hashes each token once and skips building a set per call.
    tokens = spaced.split()
    words = " ".join(tokens)
    # Only pay for the spaced-letter regex when the text has several rare
    # single letters, which ordinary prose does not.
    if len(_SINGLE_LETTERS.intersection(tokens)) >= 3:
        joined = _SPACED.sub(_join_spaced, spaced)
        if joined != spaced:
            signals.append("spaced-letters")
            tokens = joined.split()
            words = " ".join(tokens)
    return Views(raw=cased, text=text, words=words, tokens=tokens, signals=tuple(signals))
