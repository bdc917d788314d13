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
from collections.abc import Sequence
from dataclasses import dataclass

import re2

from agent_operator.guard.confusables import CONFUSABLES

# Zero-width, joiner, word-joiner, BOM, soft hyphen, Mongolian vowel separator
# and the bidi controls: invisible, so an attacker can split words with them.
_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
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
# _SPACED for ASCII text as UTF-8, in RE2 (one pass): on ASCII, RE2's \b
# and Python's lookarounds for \w agree.
_SPACED_ASCII = re2.compile(rb"\b[0-9A-Za-z_](?: [0-9A-Za-z_]){2,}\b")
# The look-alike letters that fold to something else (CONFUSABLES maps "I",
# the upper case of dotless i, to itself).
_FOLDS = {chr(c): v for c, v in CONFUSABLES.items() if chr(c) != v}
_K = re.escape("".join(sorted(_FOLDS)))
_CONFUSABLE_CHAR = re.compile(f"[{_K}]")
# Runs of consecutive words (maximal runs of \w) that have a letter but no
# Latin one ("все промпт", "Привет"), with what lies between them (spaces,
# punctuation, numbers; a word's leading digits count as the gap). Since a
# run is maximal, the words before and after it are Latin or missing. The
# first character is consumed before any test, so that re skips to
# candidates in C; every test is possessive, so a run costs one pass.
_RUN_WORD = r"[^\W\d_a-zA-Z][^\Wa-zA-Z]*+(?!\w)"  # from its first letter
# A run of one word that needs no putting back after folding, tested after
# its first character: an island in Latin text (look-alikes only, digits
# allowed: "say" in Cyrillic letters, a lone Cyrillic "a") or a word without
# look-alikes ("漢字").
_LONE_WORD = (
    f"(?:(?:(?<=[{_K}])|(?<=[\\d_])[\\d_]*+[{_K}])[{_K}\\d_]*+|(?<![{_K}])[^\\W{_K}a-zA-Z]*+)"
    r"(?!\w)(?=[\W\d_]*+(?:\Z|[^\Wa-zA-Z]*+[a-zA-Z]))"
)
# Runs to put back: all but those lone words.
_RUN = re.compile(
    rf"[^\Wa-zA-Z](?<!\w[^\Wa-zA-Z])(?!{_LONE_WORD})"
    rf"(?:(?<=[^\W\d_])[^\Wa-zA-Z]*+(?!\w)|[\d_]*+{_RUN_WORD})(?:[\W\d_]*+{_RUN_WORD})*+"
)
_LATIN_LETTER = re.compile("[a-zA-Z]")
_TAG_CHAR = re.compile("[\U000e0000-\U000e007f]")
# UTF-16 surrogates: a str may hold them (json.loads of "\\ud83d", escapes
# decoded one by one), UTF-8 and so RE2 and the byte tables cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Views:
    """The normalised views of one text and what normalising revealed."""

    raw: str
    text: str
    words: str
    tokens: list[str]
    signals: tuple[str, ...]


def well_formed(text: str) -> str:
    """``text`` with each surrogate pair combined into its character
    (``"\\ud83d\\ude00"`` into the emoji) and each lone surrogate replaced
    by U+FFFD, so that it encodes to UTF-8."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _fold_homoglyphs(text: str) -> tuple[str, bool]:
    """Map look-alike letters to Latin where they stand for Latin letters.

    Folded: a word that mixes Latin letters and look-alikes ("ignore" spelt
    with Cyrillic i, o, e), and a word of look-alikes only ("say" spelt with
    Cyrillic s, a, y; a lone Cyrillic "a") that is an island in Latin text:
    its nearest words with letters before and after are Latin (a missing one
    at either end of the text agrees with the other). Kept: a word with a
    letter that has no Latin look-alike (Russian "пожалуйста"), and a word of
    look-alikes next to a non-Latin word, a real word of its script (Russian
    "все промпт", Greek "ένα κείμενο"), in Russian prose as in English JSON.
    """
    if _LATIN_LETTER.search(text) is None:
        # No Latin word: nothing is mixed, and no word is an island (the
        # only word of a text has no neighbour to agree with; _RUN relies
        # on this).
        return text, False
    # Fold the whole text, then put back the runs of non-Latin words that
    # are no islands (each look-alike is one character, so offsets agree):
    # Russian prose is one run. One replace per look-alike present:
    # str.translate costs a dict lookup per character.
    folded = text
    for char, latin in _FOLDS.items():
        if char in folded:
            folded = folded.replace(char, latin)
    pieces: list[str] = []
    end = 0
    for match in _RUN.finditer(text):
        start, stop = match.span()
        pieces += (folded[end:start], text[start:stop])
        end = stop
    if pieces:
        folded = "".join(pieces) + folded[end:]
    return folded, folded != text


def _unicode_text(raw: str) -> tuple[str, str, list[str]]:
    signals: list[str] = []
    text = raw
    if _TAG_CHAR.search(text):
        signals.append("tag-characters")
        text = text.translate(_TAGS)
    if _HIDDEN.search(text):
        # A containment test and a replace per hidden character: C loops,
        # unlike set(text) and str.translate, which cost a lookup per char.
        hidden = [c for c in _INVISIBLE + _BIDI if c in text]
        if _SUSPICIOUS_INVISIBLE.intersection(hidden):
            signals.append("invisible-characters")
        if _BIDI_SET.intersection(hidden):
            signals.append("bidi-controls")
        for char in hidden:
            text = text.replace(char, "")
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
        cased, text, signals = _unicode_text(well_formed(raw))
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


def ascii_words(texts: Sequence[str], separator: str) -> list[str] | None:
    """The ``tokens`` views of ASCII ``texts`` in one list, each text's
    tokens followed by the token ``separator`` (a non-ASCII character);
    None when normalising any of them might find spaced-out letters (then
    their views are not plain).

    For the many short strings of a JSON body: each step is one C call over
    all of them, not one Python call per string.
    """
    # lower() and the byte table act character by character, and the
    # separator is no word character: no spaced-out run crosses it.
    spaced = f" {separator} ".join(texts).lower().encode("utf-8").translate(_WORDS_BYTES)
    if _SPACED_ASCII.search(spaced) is not None:
        return None
    return spaced.decode("utf-8").split()
