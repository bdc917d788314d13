"""Find base64, hex and URL-encoded payloads and decode them to text.

Only decodings that yield mostly printable text are kept, so random tokens,
hashes and binary blobs cost one failed decode and produce no findings.

Everything that runs per character or per token runs inside C (codecs,
``bytes.translate``, ``map`` over builtins): a megabyte of escapes or of
base64-looking tokens would otherwise cost a Python call per item.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Iterator
from itertools import compress, islice, repeat
from operator import add, mod, mul, ne, neg, not_, or_
from urllib.parse import unquote

import re2

from agent_operator.guard.normalise import well_formed

_MIN_B64 = 16
_B64 = re.compile(r"[A-Za-z0-9+/\-_]{16,}={0,2}")
# RE2, not re: the same leftmost-first matches (the pattern is plain
# ASCII, no lookaround), found by a DFA instead of a loop per pair of digits.
_HEX = re2.compile(rb"(?:[0-9a-fA-F]{2}(?:[ :,]|\\x|0x)?){8,}")
_HEX_JUNK = re.compile(rb"[ :,]|\\x|0x")
_URL = re.compile(r"%[0-9a-fA-F]{2}")
_URL_LONE = re.compile(rb"%(?![0-9a-fA-F]{2})")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})")
# A backslash that does not start one of the escapes _ESCAPE decodes.
_LONE_BACKSLASH = re.compile(r"\\(?!u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2})")
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_NOT_LETTER_OR_SPACE = bytes(
    b for b in range(256) if not (chr(b).isalpha() and b < 128) and b != 32
)
_MAX_PAYLOADS = 8
# Base64 candidates are decoded in batches of this many tokens, so that a
# text with a few payloads stops early and one with 50,000 tokens does not
# pay a Python call for each.
_B64_BATCH = 256


def _printable(text: str) -> bool:
    """Mostly letters and spaces: a decoded payload worth scanning."""
    if len(text) < 6 or " " not in text:
        return False
    if text.isascii():
        good = len(text.encode("ascii").translate(None, _NOT_LETTER_OR_SPACE))
    else:
        good = sum(map(str.isalpha, text)) + text.count(" ")
    return good / len(text) >= 0.7


def _from_bytes(data: bytes) -> str | None:
    if data.isascii():
        text = data.decode("ascii")
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    # Keep nested encodings (base64 of base64) for the next round of decoding.
    return text if _printable(text) or _B64.fullmatch(text) else None


def _mixed_case(tokens: list[str]) -> list[str]:
    # Hex digests and long identifiers also match the alphabet; a payload
    # worth decoding mixes upper and lower case. (map over the str methods
    # keeps the per-token work in C.)
    single = map(
        or_, map(or_, map(str.islower, tokens), map(str.isupper, tokens)), map(str.isdigit, tokens)
    )
    return list(compress(tokens, map(not_, single)))


def _b64_decoded(tokens: list[str]) -> Iterator[str]:
    """The printable decodings of ``tokens``, in order, each decoded as
    ``base64.b64decode`` would (URL-safe alphabet included)."""
    stripped = list(map(str.rstrip, _mixed_case(tokens), repeat("=")))
    # A length of 4n+1 never decodes (binascii raises); the rest is padded.
    lengths = list(map(len, stripped))
    decodable = list(compress(stripped, map(ne, map(mod, lengths, repeat(4)), repeat(1))))
    padding = map(mul, repeat("="), map(mod, map(neg, map(len, decodable)), repeat(4)))
    padded = map(str.encode, map(add, decodable, padding))
    datas = list(map(binascii.a2b_base64, map(bytes.translate, padded, repeat(_URLSAFE))))
    # A printable decoding holds a space, a nested base64 one is ASCII:
    # what has neither (most random tokens) is dropped before decoding.
    worth = map(or_, map(bytes.__contains__, datas, repeat(b" ")), map(bytes.isascii, datas))
    for data in compress(datas, worth):
        decoded = _from_bytes(data)
        if decoded:
            yield decoded


def _unquote(raw: str) -> str:
    """``urllib.parse.unquote(raw)`` with the per-escape loop in C."""
    try:
        data = raw.encode("utf-8")
    except UnicodeEncodeError:
        return unquote(raw)  # lone surrogates: the reference path
    # %XX -> \xXX, then the escape codec decodes every escape at once;
    # existing backslashes are doubled and a "%" that starts no escape
    # becomes \x25, so that both stay literal.
    escaped = _URL_LONE.sub(rb"\\x25", data.replace(b"\\", b"\\\\")).replace(b"%", b"\\x")
    decoded: bytes = codecs.escape_decode(escaped)[0]
    # Decoding the whole text at once equals unquote's per-ASCII-run
    # decoding: a non-ASCII character is a complete UTF-8 sequence, which
    # the "replace" handler never merges with bytes around it.
    return decoded.decode("utf-8", "replace")


def _unescape(raw: str) -> str:
    """``raw`` with every ``\\uXXXX`` and ``\\xXX`` escape decoded, then
    made well-formed (escaped surrogate pairs, as ``json.dumps`` writes
    emoji and tag characters, become the characters they stand for)."""
    # Backslashes that start no such escape are doubled, characters beyond
    # Latin-1 become escapes themselves; the codec then undoes all of it.
    doubled = _LONE_BACKSLASH.sub(r"\\\\", raw)
    decoded = codecs.decode(doubled.encode("latin-1", "backslashreplace"), "unicode_escape")
    return well_formed(decoded)


def _hex_payloads(raw: str) -> Iterator[str]:
    try:
        data = raw.encode("utf-8")
    except UnicodeEncodeError:
        data = raw.encode("utf-8", "replace")  # a lone surrogate is no hex digit either
    for match in _HEX.finditer(data):
        digits = _HEX_JUNK.sub(b"", match.group())
        if len(digits) % 2:
            digits = digits[:-1]
        decoded = _from_bytes(binascii.unhexlify(digits))
        if decoded:
            yield decoded


def _b64_payloads(raw: str) -> Iterator[str]:
    tokens = [t for t in _B64.findall(raw) if len(t) >= _MIN_B64]
    for start in range(0, len(tokens), _B64_BATCH):
        yield from _b64_decoded(tokens[start : start + _B64_BATCH])


def decode_payloads(raw: str) -> list[str]:
    """Decoded texts hidden in ``raw`` (at most a few, each printable)."""
    found: list[str] = []
    # A few percent escapes: URL-decode the whole text ("50%" stays as is).
    if "%" in raw and len(list(islice(_URL.finditer(raw), 3))) == 3:
        found.append(_unquote(raw.replace("+", " ")))
    if "\\" in raw:
        text = _unescape(raw)
        if text != raw:
            found.append(text)
    for payloads in (_hex_payloads(raw), _b64_payloads(raw)):
        for decoded in payloads:
            if len(found) >= _MAX_PAYLOADS:
                return found
            found.append(decoded)
    return found
