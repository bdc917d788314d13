"""Issuers of keys, behind one interface: mint, revoke, list.

- `static`: the key a source Secret holds (it opted in with a label). Minting
  takes the source's value; there is nothing to revoke anywhere.
- `generated`: random keys (256 bits, URL-safe). Nothing to revoke: a key
  dies with the Secret that holds it.
- `openai`: a project service account minted with the OpenAI Admin API
  (operator/openai_admin.py). External: what is minted must be revoked.

Minting a new key is always a new key: keeping the one a Secret already
holds is the rotation plan's decision (operator/rotation.py), not an issuer's.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from agent_operator.api import ADMIN_URLS_ANNOTATION, DEFAULT_ADMIN_BASE_URL, ISSUER_SOURCE_LABEL
from agent_operator.api import Issuer as IssuerSpec
from agent_operator.operator.credentials import MAX_KEY_BYTES, IssuedKey, decode, opted_in
from agent_operator.operator.problems import Problem

GENERATED_KEY_BYTES: Final = 32  # 256 bits


class Issuer(Protocol):
    """Mints and revokes keys; `external` when revocation happens somewhere else."""

    @property
    def external(self) -> bool: ...

    def issue(self, name: str) -> IssuedKey:
        """A new key. `name` is recorded before the call, so that a key minted by a
        call whose answer was lost can be found again by `list` and revoked."""
        ...

    def revoke(self, key_id: str) -> None:
        """Revoke `key_id`; one already gone is not an error."""
        ...

    def list(self, name_prefix: str) -> list[tuple[str, str]]:
        """(key id, name) of every live key whose name starts with `name_prefix`."""
        ...


@dataclass(frozen=True)
class GeneratedIssuer:
    """Random keys; nothing outside the Secret knows them."""

    external: bool = False

    def issue(self, name: str) -> IssuedKey:
        return IssuedKey(f"gen-{secrets.token_hex(6)}", secrets.token_urlsafe(GENERATED_KEY_BYTES))

    def revoke(self, key_id: str) -> None:
        return None

    def list(self, name_prefix: str) -> list[tuple[str, str]]:
        return []


@dataclass(frozen=True)
class StaticIssuer:
    """The key of a source Secret in the AgentDeployment's namespace that opted in."""

    secret_name: str
    key: str
    source: Mapping[str, Any] | None  # the source Secret's body, None when missing
    external: bool = False

    def value(self) -> str:
        """The source's key, checked; raises Problem naming what is wrong."""
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
        return checked_key(self.source, self.key, where)

    def issue(self, name: str) -> IssuedKey:
        return IssuedKey(f"static-{secrets.token_hex(6)}", self.value())

    def revoke(self, key_id: str) -> None:
        return None  # the source's owner revokes at the provider

    def list(self, name_prefix: str) -> list[tuple[str, str]]:
        return []


def checked_key(secret: Mapping[str, Any], key: str, where: str) -> str:
    """`data[key]` of a Secret as text, or a Problem saying why it is not a key."""
    if (secret.get("data") or {}).get(key) is None:
        raise Problem("CredentialsSecretMissing", f"{where} has no key {key!r}")
    value = decode(secret, key)
    size = len(value.encode()) if value is not None else 0
    if value is None or not value.strip() or size > MAX_KEY_BYTES:
        why = (
            "is not UTF-8 text"
            if value is None
            else "is empty"
            if not value.strip()
            else f"is {size} bytes, more than the {MAX_KEY_BYTES} a key may have"
        )
        raise Problem("CredentialsKeyInvalid", f"key {key!r} of {where} {why}")
    return value.strip()


def admin_urls(secret: Mapping[str, Any]) -> set[str]:
    """The Admin API base URLs an admin-key Secret lets its key be sent to."""
    notes = secret.get("metadata", {}).get("annotations") or {}
    listed = notes.get(ADMIN_URLS_ANNOTATION)
    if listed is None:
        return {DEFAULT_ADMIN_BASE_URL}
    return {url.strip().rstrip("/") for url in listed.split(",") if url.strip()}


def upstream_issuer(
    spec: IssuerSpec, source: Mapping[str, Any] | None, timeout_seconds: float = 10.0
) -> Issuer:
    """The issuer of the upstream key for `spec.credentials.issuer`.

    `source` is the Secret `secretRef` names (the static source, or the
    openai admin key), None when missing or not needed.
    """
    if spec.type == "generated":
        return GeneratedIssuer()
    assert spec.secret_ref is not None  # the API enforces it
    if spec.type == "static":
        return StaticIssuer(spec.secret_ref.name, spec.secret_ref.key, source)
    from agent_operator.operator.openai_admin import OpenAIAdminIssuer

    admin = StaticIssuer(spec.secret_ref.name, spec.secret_ref.key, source).value()
    assert source is not None  # value() raised otherwise
    allowed = admin_urls(source)
    if spec.admin_base_url.rstrip("/") not in allowed:
        # whoever may write an AgentDeployment must not send the admin key elsewhere
        raise Problem(
            "IssuerURLNotAllowed",
            f"adminBaseURL {spec.admin_base_url!r} is not one the admin-key Secret "
            f"{spec.secret_ref.name!r} allows ({', '.join(sorted(allowed))}); its owner "
            f"may list it in the annotation {ADMIN_URLS_ANNOTATION}",
        )
    assert spec.project_id is not None  # the API enforces it
    return OpenAIAdminIssuer(
        spec.admin_base_url, admin, spec.project_id, timeout_seconds=timeout_seconds
    )
