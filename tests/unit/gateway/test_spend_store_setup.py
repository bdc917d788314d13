"""Choosing the spend store at start: a bad setting is a clear error, never a leaked secret."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agent_operator.gateway.config import Settings, parse_settings
from agent_operator.gateway.main import spend_store
from agent_operator.gateway.telemetry import JsonLog, Metrics
from agent_operator.sidecar import POD_NAME_ENV, POD_UID_ENV, REDIS_URL_ENV


def settings(tmp_path: Path, store: str) -> Settings:
    upstream = ["--provider", "openai", "--upstream-url", "http://127.0.0.1:1/v1"]
    return parse_settings([*upstream, "--credentials-dir", str(tmp_path), "--spend-store", store])


@pytest.mark.parametrize(
    "url", ["http://user:s3cretpw@host:1/0", "redis://user:s3cretpw@" + "h" * 10_000, "\xff"]
)
def test_a_bad_redis_url_names_the_cause_not_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv(REDIS_URL_ENV, url)
    try:
        store = spend_store(settings(tmp_path, "redis"), Metrics(), JsonLog(io.StringIO()))
    except ValueError as exc:
        assert "s3cretpw" not in str(exc)
    else:  # a long host parses: it fails when used, and says nothing of the URL then
        assert not store.ready


def test_missing_settings_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    with pytest.raises(ValueError, match=REDIS_URL_ENV):
        spend_store(settings(tmp_path, "redis"), Metrics(), JsonLog(io.StringIO()))
    monkeypatch.delenv(POD_NAME_ENV, raising=False)
    monkeypatch.delenv(POD_UID_ENV, raising=False)
    with pytest.raises(ValueError, match=POD_UID_ENV):
        spend_store(settings(tmp_path, "kubernetes"), Metrics(), JsonLog(io.StringIO()))
