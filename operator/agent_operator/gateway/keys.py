"""Keys from the mounted Secrets: the upstream provider key and the client keys.

Layout (`sidecar.SECRET_FILES`): `current`, `previous`, `previous-expires-at`,
and for client keys `next` (staged: accepted before callers are given it)
(RFC 3339 UTC). The upstream key is injected as-is; client keys are kept
only as SHA-256 digests and compared in constant time against all of them.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent_operator.gateway.volumes import Signature, read_files
from agent_operator.sidecar import CURRENT, NEXT, PREVIOUS, PREVIOUS_EXPIRES_AT, SECRET_FILES


class KeyFileError(ValueError):
    """The mounted Secret is unusable (missing or empty `current`, bad expiry)."""


def parse_rfc3339(value: str) -> float:
    """RFC 3339 time -> epoch seconds (a missing offset is read as UTC)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    """The provider key to inject; never logged (repr hides it)."""

    value: str

    def __repr__(self) -> str:
        return "UpstreamKey(<redacted>)"


def upstream_key_from(files: dict[str, str]) -> UpstreamKey:
    key = files.get(CURRENT, "").strip()
    if not key:
        raise KeyFileError(f"credentials: `{CURRENT}` is missing or empty")
    return UpstreamKey(key)


def digest(key: str) -> bytes:
    # surrogateescape: aiohttp hands non-UTF-8 header bytes over as surrogates; a
    # plain encode() raised, answering 500 and logging the presented key in the error
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class ClientKeys:
    """SHA-256 digests of the accepted client keys with their expiry (epoch s, inf = none)."""

    entries: tuple[tuple[bytes, float], ...]

    def __repr__(self) -> str:
        return f"ClientKeys({len(self.entries)} keys)"

    def verify(self, presented: str, now: float) -> bool:
        """True when `presented` matches a key valid at `now` (epoch seconds).

        Compares against every stored digest with no early exit, so the work
        done does not depend on which key (or which prefix) matched.
        """
        candidate = digest(presented)
        ok = False
        for stored, expires_at in self.entries:
            matched = hmac.compare_digest(stored, candidate)
            ok |= matched & (now < expires_at)
        return ok


def client_keys_from(files: dict[str, str]) -> ClientKeys:
    current = files.get(CURRENT, "").strip()
    if not current:
        raise KeyFileError(f"client keys: `{CURRENT}` is missing or empty")
    entries = [(digest(current), float("inf"))]
    previous = files.get(PREVIOUS, "").strip()
    if previous:
        expiry_text = files.get(PREVIOUS_EXPIRES_AT, "").strip()
        try:
            # no expiry written: treat the previous key as already expired (fail closed)
            expires_at = parse_rfc3339(expiry_text) if expiry_text else 0.0
        except ValueError as exc:
            raise KeyFileError(f"client keys: `{PREVIOUS_EXPIRES_AT}` is not RFC 3339") from exc
        entries.append((digest(previous), expires_at))
    staged = files.get(NEXT, "").strip()
    if staged:
        entries.append((digest(staged), float("inf")))
    return ClientKeys(tuple(entries))


def load_secret(directory: Path) -> tuple[dict[str, str], Signature] | None:
    """One consistent read of a mounted Secret, or None when it changed mid-read."""
    return read_files(directory, SECRET_FILES)
