from __future__ import annotations

import hmac
from pathlib import Path
from unittest import mock

import pytest

from agent_operator.gateway import keys
from agent_operator.gateway.keys import (
    KeyFileError,
    client_keys_from,
    load_secret,
    parse_rfc3339,
    upstream_key_from,
)
from tests.fakes.volumes import KubeVolume, secret_files

NOW = parse_rfc3339("2026-11-25T00:00:00Z")


def test_rfc3339_forms() -> None:
    assert parse_rfc3339("2026-11-25T00:00:00Z") == parse_rfc3339("2026-11-25T01:00:00+01:00")
    assert parse_rfc3339("2026-11-25T00:00:00") == NOW  # no offset: UTC
    with pytest.raises(ValueError):
        parse_rfc3339("tomorrow")


def test_current_and_unexpired_previous_are_valid() -> None:
    ks = client_keys_from(secret_files("cur", "prev", "2026-11-26T00:00:00Z"))
    assert ks.verify("cur", NOW) and ks.verify("prev", NOW)
    assert not ks.verify("nope", NOW) and not ks.verify("", NOW) and not ks.verify("cu", NOW)


def test_previous_stops_at_its_expiry() -> None:
    ks = client_keys_from(secret_files("cur", "prev", "2026-11-25T00:00:00Z"))
    assert not ks.verify("prev", NOW)  # expiry is exclusive
    assert ks.verify("prev", NOW - 1)
    assert ks.verify("cur", NOW + 10**9)


def test_previous_without_expiry_fails_closed() -> None:
    ks = client_keys_from(secret_files("cur", "prev"))
    assert not ks.verify("prev", NOW)


@pytest.mark.parametrize("presented", ["cur", "prev", "cu", "c", "wrong", "curX", ""])
def test_compare_does_the_same_work_whatever_matches(presented: str) -> None:
    ks = client_keys_from(secret_files("cur", "prev", "2999-01-01T00:00:00Z"))
    with mock.patch.object(keys.hmac, "compare_digest", wraps=hmac.compare_digest) as spy:
        ks.verify(presented, NOW)
    assert spy.call_count == len(ks.entries) == 2  # every stored key, no early exit
    for call in spy.call_args_list:
        stored, candidate = call.args
        assert len(stored) == len(candidate) == 32  # digests, never the raw keys


def test_keys_are_stored_only_as_digests() -> None:
    ks = client_keys_from(secret_files("super-secret-value"))
    assert b"super-secret-value" not in b"".join(d for d, _ in ks.entries)
    assert "super-secret" not in repr(ks)
    assert "sk-" not in repr(upstream_key_from({"current": "sk-abc"}))


@pytest.mark.parametrize("files", [{}, {"current": "  \n"}])
def test_missing_current_is_an_error(files: dict[str, str]) -> None:
    with pytest.raises(KeyFileError):
        upstream_key_from(files)
    with pytest.raises(KeyFileError):
        client_keys_from(files)


def test_bad_expiry_is_an_error() -> None:
    with pytest.raises(KeyFileError):
        client_keys_from(secret_files("a", "b", "soon"))


def test_upstream_key_is_stripped_of_newline() -> None:
    assert upstream_key_from({"current": "sk-1\n"}).value == "sk-1"


def test_load_secret_follows_kubernetes_swap(tmp_path: Path) -> None:
    vol = KubeVolume(tmp_path / "creds", secret_files("one"))
    first = load_secret(vol.path)
    assert first is not None and first[0] == {"current": "one"}
    vol.update(secret_files("two", "one", "2999-01-01T00:00:00Z"))
    second = load_secret(vol.path)
    assert second is not None and second[0]["current"] == "two"
    assert second[0]["previous"] == "one" and second[1] != first[1]
    vol.update(secret_files("three"))
    third = load_secret(vol.path)
    assert third is not None and set(third[0]) == {"current"}
    assert len([p for p in vol.path.iterdir() if p.name.startswith("..2")]) == 1


def test_non_utf8_presented_key_is_just_invalid() -> None:
    # aiohttp decodes a header byte 0xff as the surrogate U+DCFF
    ks = client_keys_from(secret_files("cur"))
    assert ks.verify("cur\udcff", NOW) is False


def test_a_staged_client_key_is_accepted_before_callers_are_given_it() -> None:
    keys = client_keys_from({"current": "old", "next": "staged"})
    assert keys.verify("old", 0) and keys.verify("staged", 0)
    assert not keys.verify("other", 0)
    # the upstream key ignores `next`: only the gateway holds it, nothing to stage
    assert upstream_key_from({"current": "up", "next": "up-2"}).value == "up"
