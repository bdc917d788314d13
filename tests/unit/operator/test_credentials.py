"""Issuers and the content of key Secrets."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from agent_operator.api import Issuer as IssuerSpec
from agent_operator.operator.credentials import (
    ISSUED_AT,
    KEY_ID,
    GeneratedIssuer,
    IssuedKey,
    StaticIssuer,
    credentials_issuer,
    fill_secret,
    secret_content,
)
from agent_operator.operator.problems import Problem

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(data: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, object]:
    return {"metadata": {"annotations": annotations or {}},
            "data": {k: b64(v) for k, v in data.items()}}


def test_static_copies_the_source_key() -> None:
    key = StaticIssuer("src", "apiKey", secret({"apiKey": "sk-1"})).issue()
    assert key.secret == "sk-1" and key.key_id.startswith("static-")
    assert "sk-1" not in repr(key)


@pytest.mark.parametrize("source", [None, secret({"other": "x"})])
def test_static_missing_secret_or_key_is_a_problem(source: dict[str, object] | None) -> None:
    with pytest.raises(Problem) as err:
        StaticIssuer("src", "apiKey", source).issue()
    assert err.value.reason == "CredentialsSecretMissing" and err.value.retry
    assert "'src'" in err.value.message and "'apiKey'" in err.value.message


def test_generated_keeps_the_existing_key() -> None:
    assert GeneratedIssuer("kept").issue().secret == "kept"
    one, two = GeneratedIssuer().issue(), GeneratedIssuer().issue()
    assert one.secret != two.secret and len(one.secret) >= 40


def test_openai_issuer_is_not_supported_yet() -> None:
    spec = IssuerSpec.model_validate({"type": "openai", "secretRef": {"name": "admin"},
                                      "projectID": "proj_1"})
    with pytest.raises(Problem) as err:
        credentials_issuer(spec, None, None)
    assert err.value.reason == "IssuerNotSupportedYet"


def test_unchanged_key_keeps_issue_time() -> None:
    live = secret({"current": "sk-1"}, {ISSUED_AT: "2025-01-01T00:00:00Z", KEY_ID: "static-1"})
    content = secret_content(IssuedKey("static-2", "sk-1"), live, NOW)
    assert not content.issued
    assert content.annotations == {ISSUED_AT: "2025-01-01T00:00:00Z", KEY_ID: "static-1"}


def test_new_key_is_stamped() -> None:
    live = secret({"current": "sk-1"}, {ISSUED_AT: "2025-01-01T00:00:00Z", KEY_ID: "static-1"})
    content = secret_content(IssuedKey("static-2", "sk-2"), live, NOW)
    assert content.issued
    assert content.annotations == {ISSUED_AT: "2026-01-01T12:00:00Z", KEY_ID: "static-2"}
    assert content.data == {"current": b64("sk-2")}


def test_fill_secret_keeps_builder_metadata() -> None:
    desired = {"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "bot-credentials", "labels": {"a": "b"}}, "type": "Opaque"}
    content = secret_content(IssuedKey("k", "v"), None, NOW)
    body = fill_secret(desired, content)
    assert body["metadata"]["labels"] == {"a": "b"}
    assert body["metadata"]["annotations"][ISSUED_AT] == "2026-01-01T12:00:00Z"
    assert body["data"] == {"current": b64("v")}
    assert "data" not in desired  # the builder's dict is not mutated


def test_unchanged_key_without_annotations_is_stamped_but_not_issued() -> None:
    live = secret({"current": "kept"})
    content = secret_content(GeneratedIssuer("kept").issue(), live, NOW)
    assert not content.issued  # the same key: no KeyIssued event
    assert content.annotations[ISSUED_AT] == "2026-01-01T12:00:00Z"
    assert content.annotations[KEY_ID].startswith("gen-")
    assert content.data == {"current": b64("kept")}
    # once stamped, the stamp is kept
    stamped = secret({"current": "kept"}, content.annotations)
    again = secret_content(GeneratedIssuer("kept").issue(), stamped, NOW.replace(hour=13))
    assert again.annotations == content.annotations and not again.issued
