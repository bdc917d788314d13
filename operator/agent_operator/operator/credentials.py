"""Key material as the operator handles it: a minted key, reading Secret data.

The lifecycle of the key Secrets is operator/rotation.py (pure) and
operator/keys.py (I/O); the issuers are operator/issuers.py.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agent_operator.api import ISSUER_SOURCE_LABEL

# Far above any provider's API key; a bigger value is a mistake (or an attack on
# the Secrets and the gateway that hold it), not a key.
MAX_KEY_BYTES: Final = 16 * 1024


@dataclass(frozen=True)
class IssuedKey:
    """A key and its non-secret identifier."""

    key_id: str
    secret: str

    def __repr__(self) -> str:  # never print key material by accident
        return f"IssuedKey(key_id={self.key_id!r}, secret=<redacted>)"


def decode(secret: Mapping[str, Any] | None, key: str) -> str | None:
    """The text of `data[key]` of a Secret body, or None when absent or not UTF-8."""
    if not secret:
        return None
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def opted_in(secret: Mapping[str, Any]) -> bool:
    """True when a Secret carries the issuer-source label: its keys may be copied."""
    labels = secret.get("metadata", {}).get("labels") or {}
    return labels.get(ISSUER_SOURCE_LABEL) == "true"
