"""Issuers and the content of key Secrets."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from agent_operator.api import ISSUER_SOURCE_LABEL
from agent_operator.api import Issuer as IssuerSpec
from agent_operator.operator.credentials import (
    ISSUED_AT,
    KEY_ID,
    MAX_KEY_BYTES,
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


def secret(data: dict[str, str], annotations: dict[str, str] | None = None,
           labels: dict[str, str] | None = None) -> dict[str, object]:
    return {"metadata": {"annotations": annotations or {}, "labels": labels or {}},
            "data": {k: b64(v) for k, v in data.items()}}


def source(data: dict[str, str]) -> dict[str, object]:
    """A Secret that opted in to being an issuer source."""
    return secret(data, labels={ISSUER_SOURCE_LABEL: "true"})


def problem_of(issuer: StaticIssuer) -> Problem:
    with pytest.raises(Problem) as err:
        issuer.issue()
    return err.value


def test_static_copies_the_source_key() -> None:
    key = StaticIssuer("src", "apiKey", source({"apiKey": "sk-1"})).issue()
    assert key.secret == "sk-1" and key.key_id.startswith("static-")
    assert "sk-1" not in repr(key)


@pytest.mark.parametrize("body", [None, source({"other": "x"})])
def test_static_missing_secret_or_key_is_a_problem(body: dict[str, object] | None) -> None:
    problem = problem_of(StaticIssuer("src", "apiKey", body))
    assert problem.reason == "CredentialsSecretMissing" and problem.retry
    assert "'src'" in problem.message and "'apiKey'" in problem.message


@pytest.mark.parametrize("labels", [{}, {ISSUER_SOURCE_LABEL: "false"}, {"other": "true"}])
def test_static_source_must_opt_in(labels: dict[str, str]) -> None:
    body = secret({"apiKey": "sk-not-for-you"}, labels=labels)
    problem = problem_of(StaticIssuer("src", "apiKey", body))
    assert problem.reason == "CredentialsSourceNotOptedIn" and problem.retry
    assert "'src'" in problem.message and f"{ISSUER_SOURCE_LABEL}=true" in problem.message
    assert "sk-not-for-you" not in problem.message


@pytest.mark.parametrize(
    ("value", "why"),
    [("", "is empty"), ("k" * (MAX_KEY_BYTES + 1), f"is {MAX_KEY_BYTES + 1} bytes")],
)
def test_static_key_must_be_sane(value: str, why: str) -> None:
    problem = problem_of(StaticIssuer("src", "apiKey", source({"apiKey": value})))
    assert problem.reason == "CredentialsKeyInvalid" and problem.retry
    assert why in problem.message and "'apiKey'" in problem.message and "'src'" in problem.message
    longest = "k" * MAX_KEY_BYTES
    assert StaticIssuer("src", "apiKey", source({"apiKey": longest})).issue().secret == longest


def test_static_key_that_is_not_text_is_invalid() -> None:
    body = source({})
    body["data"] = {"apiKey": base64.b64encode(b"\xff\xfe").decode()}
    problem = problem_of(StaticIssuer("src", "apiKey", body))
    assert problem.reason == "CredentialsKeyInvalid" and "not UTF-8" in problem.message


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
