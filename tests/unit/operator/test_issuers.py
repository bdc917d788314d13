"""The static and generated issuers (the openai one: test_openai_admin.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from agent_operator.api import ADMIN_URLS_ANNOTATION, ISSUER_SOURCE_LABEL
from agent_operator.api import Issuer as IssuerSpec
from agent_operator.operator.credentials import MAX_KEY_BYTES
from agent_operator.operator.issuers import GeneratedIssuer, StaticIssuer, upstream_issuer
from agent_operator.operator.problems import Problem


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, object]:
    return {"metadata": {"labels": labels or {}}, "data": {k: b64(v) for k, v in data.items()}}


def source(data: dict[str, str]) -> dict[str, object]:
    """A Secret that opted in to being an issuer source."""
    return secret(data, labels={ISSUER_SOURCE_LABEL: "true"})


def problem_of(issuer: StaticIssuer) -> Problem:
    with pytest.raises(Problem) as err:
        issuer.issue("name")
    return err.value


def test_static_copies_the_source_key() -> None:
    key = StaticIssuer("src", "apiKey", source({"apiKey": "sk-1"})).issue("name")
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
    [
        ("", "is empty"),
        (" \n", "is empty"),
        ("k" * (MAX_KEY_BYTES + 1), f"is {MAX_KEY_BYTES + 1} bytes"),
    ],
)
def test_static_key_must_be_sane(value: str, why: str) -> None:
    problem = problem_of(StaticIssuer("src", "apiKey", source({"apiKey": value})))
    assert problem.reason == "CredentialsKeyInvalid" and problem.retry
    assert why in problem.message and "'apiKey'" in problem.message and "'src'" in problem.message
    longest = "k" * MAX_KEY_BYTES
    assert StaticIssuer("src", "apiKey", source({"apiKey": longest})).issue("n").secret == longest


def test_static_key_that_is_not_text_is_invalid() -> None:
    body = source({})
    body["data"] = {"apiKey": base64.b64encode(b"\xff\xfe").decode()}
    problem = problem_of(StaticIssuer("src", "apiKey", body))
    assert problem.reason == "CredentialsKeyInvalid" and "not UTF-8" in problem.message


def test_generated_always_mints_a_new_random_key() -> None:
    issuer = GeneratedIssuer()
    keys = [issuer.issue("n") for _ in range(3)]
    assert len({k.secret for k in keys}) == 3 and len({k.key_id for k in keys}) == 3
    # 32 random bytes, URL-safe base64 without padding
    assert all(len(k.secret) >= 43 and "=" not in k.secret for k in keys)
    assert not issuer.external and issuer.list("") == []


def test_openai_issuer_needs_its_admin_key_source_to_opt_in() -> None:
    spec = IssuerSpec.model_validate(
        {"type": "openai", "secretRef": {"name": "admin"}, "projectID": "proj_1"}
    )
    with pytest.raises(Problem) as err:
        upstream_issuer(spec, secret({"apiKey": "sk-admin"}))
    assert err.value.reason == "CredentialsSourceNotOptedIn"
    issuer = upstream_issuer(spec, source({"apiKey": "sk-admin"}))
    assert issuer.external and "sk-admin" not in repr(issuer)


def test_the_admin_key_goes_only_to_urls_its_secret_allows() -> None:
    spec = IssuerSpec.model_validate(
        {
            "type": "openai",
            "secretRef": {"name": "admin"},
            "projectID": "proj_1",
            "adminBaseURL": "https://thief.example/v1",
        }
    )
    with pytest.raises(Problem) as err:
        upstream_issuer(spec, source({"apiKey": "sk-admin"}))
    assert err.value.reason == "IssuerURLNotAllowed"
    assert ADMIN_URLS_ANNOTATION in err.value.message and "sk-admin" not in err.value.message
    allowed: dict[str, Any] = source({"apiKey": "sk-admin"})
    allowed["metadata"]["annotations"] = {
        ADMIN_URLS_ANNOTATION: "https://api.openai.com/v1, https://thief.example/v1/"
    }
    assert upstream_issuer(spec, allowed).external
