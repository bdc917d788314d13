"""Find base64, hex and URL-encoded payloads and decode them to text.

Only decodings that yield mostly printable text are kept, so random tokens,
hashes and binary blobs cost one failed decode and produce no findings.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote

_MIN_B64 = 16
_B64 = re.compile(r"[A-Za-z0-9+/\-_]{16,}={0,2}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}(?:[ :,]|\\x|0x)?){8,}")
_HEX_JUNK = re.compile(r"[ :,]|\\x|0x")
_URL = re.compile(r"%[0-9a-fA-F]{2}")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})")
_MAX_PAYLOADS = 8


def _printable(text: str) -> bool:
    """Mostly letters and spaces: a decoded payload worth scanning."""
    if len(text) < 6:
        return False
    good = sum(1 for c in text if c.isalpha() or c == " ")
    return good / len(text) >= 0.7 and " " in text


def _from_bytes(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Keep nested encodings (base64 of base64) for the next round of decoding.
    return text if _printable(text) or _B64.fullmatch(text) else None


def _b64(token: str) -> str | None:
    # Hex digests and long identifiers also match the alphabet; a payload
    # worth decoding mixes upper and lower case.
    if token.islower() or token.isupper() or token.isdigit():
        return None
    token = token.rstrip("=")
    try:
        data = base64.b64decode(
            token + "=" * (-len(token) % 4),
            altchars=b"-_" if ("-" in token or "_" in token) else None,
        )
    except (binascii.Error, ValueError):
        return None
    return _from_bytes(data)


def decode_payloads(raw: str) -> list[str]:
    """Decoded texts hidden in ``raw`` (at most a few, each printable)."""
    found: list[str] = []
    # A few percent escapes: URL-decode the whole text ("50%" stays as is).
    if "%" in raw and len(_URL.findall(raw)) >= 3:
        found.append(unquote(raw.replace("+", " ")))
    if "\\" in raw:
        text = _ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), raw)
        if text != raw:
            found.append(text)
    for match in _HEX.finditer(raw):
        digits = _HEX_JUNK.sub("", match.group())
        if len(digits) % 2:
            digits = digits[:-1]
        decoded = _from_bytes(bytes.fromhex(digits))
        if decoded:
            found.append(decoded)
    for match in _B64.finditer(raw):
        token = match.group()
        if len(token) >= _MIN_B64:
            decoded = _b64(token)
            if decoded:
                found.append(decoded)
        if len(found) >= _MAX_PAYLOADS:
            break
    return found[:_MAX_PAYLOADS]
