"""Key material for the Secrets X-credentials and X-client-keys.

A small seam for the rotation work to come (SPEC section 5): an `Issuer`
hands out one key; `secret_content` decides whether the Secret keeps the key
it has (and its issue time) or takes the new one. No rotation, no grace
period yet: `previous` is neither written nor removed here.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from agent_operator.api import ISSUER_SOURCE_LABEL
from agent_operator.api import Issuer as IssuerSpec
from agent_operator.operator.problems import Problem

CURRENT: Final = "current"
# Far above any provider's API key; a bigger value is a mistake (or an attack on
# the Secrets and the gateway that hold it), not a key.
MAX_KEY_BYTES: Final = 16 * 1024
ISSUED_AT: Final = "agents.dev/issued-at"
KEY_ID: Final = "agents.dev/key-id"


@dataclass(frozen=True)
class IssuedKey:
    """A key and its non-secret identifier."""

    key_id: str
    secret: str

    def __repr__(self) -> str:  # never print key material by accident
        return f"IssuedKey(key_id={self.key_id!r}, secret=<redacted>)"


class Issuer(Protocol):
    """Hands out the key a Secret should hold now."""

    def issue(self) -> IssuedKey: ...


def _new_key_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


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


@dataclass(frozen=True)
class StaticIssuer:
    """Copies a key from a Secret in the AgentDeployment's namespace that opted in."""

    secret_name: str
    key: str
    source: Mapping[str, Any] | None  # the source Secret's body, None when missing

    def issue(self) -> IssuedKey:
        where = f"Secret {self.secret_name!r} (spec.credentials.issuer.secretRef)"
        if self.source is None:
            raise Problem(
                "CredentialsSecretMissing",
                f"Secret {self.secret_name!r} (key {self.key!r}) referenced by "
                "spec.credentials.issuer.secretRef does not exist",
            )
        # Before anything of its data is read: the label is the owner's consent.
        if not opted_in(self.source):
            raise Problem(
                "CredentialsSourceNotOptedIn",
                f"{where} is not an issuer source, so its keys are not copied: if it "
                f"is meant to be one, label it {ISSUER_SOURCE_LABEL}=true "
                f"(kubectl label secret {self.secret_name} {ISSUER_SOURCE_LABEL}=true)",
            )
        raw = (self.source.get("data") or {}).get(self.key)
        if raw is None:
            raise Problem("CredentialsSecretMissing", f"{where} has no key {self.key!r}")
        value = decode(self.source, self.key)
        size = len(value.encode()) if value is not None else 0
        if value is None or not value or size > MAX_KEY_BYTES:
            why = ("is not UTF-8 text" if value is None else "is empty" if not value
                   else f"is {size} bytes, more than the {MAX_KEY_BYTES} a key may have")
            raise Problem("CredentialsKeyInvalid", f"key {self.key!r} of {where} {why}")
        return IssuedKey(_new_key_id("static"), value)


@dataclass(frozen=True)
class GeneratedIssuer:
    """Random keys; generated once, the existing key is kept."""

    existing: str | None = None

    def issue(self) -> IssuedKey:
        if self.existing:
            return IssuedKey(_new_key_id("gen"), self.existing)
        return IssuedKey(_new_key_id("gen"), secrets.token_urlsafe(32))


def credentials_issuer(spec: IssuerSpec, source: Mapping[str, Any] | None,
                       live: Mapping[str, Any] | None) -> Issuer:
    """The issuer of the upstream key for `spec.credentials.issuer`."""
    if spec.type == "static":
        assert spec.secret_ref is not None  # the API enforces it
        return StaticIssuer(spec.secret_ref.name, spec.secret_ref.key, source)
    if spec.type == "generated":
        return GeneratedIssuer(decode(live, CURRENT))
    raise Problem(
        "IssuerNotSupportedYet",
        f"issuer type {spec.type!r} is not supported by this operator version yet; "
        "use 'static' or 'generated'",
    )


@dataclass(frozen=True)
class SecretContent:
    """data (base64) and annotations of a key Secret."""

    data: dict[str, str]
    annotations: dict[str, str]
    issued: bool  # a new key replaced the one the Secret had


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def secret_content(key: IssuedKey, live: Mapping[str, Any] | None, now: datetime) -> SecretContent:
    """Keep the live key and its annotations when unchanged, else take `key` issued `now`.

    An unchanged key whose annotations were lost is stamped again, but it is
    not reported as issued.
    """
    encoded = base64.b64encode(key.secret.encode()).decode()
    live_annotations = (live or {}).get("metadata", {}).get("annotations") or {}
    same = decode(live, CURRENT) == key.secret
    key_id = live_annotations.get(KEY_ID, key.key_id) if same else key.key_id
    issued_at = live_annotations.get(ISSUED_AT) if same else None
    annotations = {ISSUED_AT: issued_at or _rfc3339(now), KEY_ID: key_id}
    return SecretContent({CURRENT: encoded}, annotations, issued=not same)


def fill_secret(desired: Mapping[str, Any], content: SecretContent) -> dict[str, Any]:
    """The builder's metadata-only Secret with its data and annotations filled in."""
    body = dict(desired)
    metadata = dict(body.get("metadata", {}))
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **content.annotations}
    body["metadata"] = metadata
    body["data"] = content.data
    return body
