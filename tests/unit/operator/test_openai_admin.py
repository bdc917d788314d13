"""The OpenAI Admin API issuer against the fake Admin API (tests/fakes/openai_admin.py).

The issuer is synchronous, as the reconcile that calls it: the fake serves
from a thread of its own. Backoff is capped at a few milliseconds so that
retries cost nothing; timeouts are a few tenths of a second.
"""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from agent_operator.operator.openai_admin import (
    IssuedKey,
    IssuerRefused,
    IssuerUnavailable,
    OpenAIAdminIssuer,
)
from tests.fakes.openai_admin import FakeOpenAIAdmin, Fault

ADMIN_KEY = "sk-admin-Zq9xW2vTtest0000secret1234"
PROJECT = "proj_1"
PREFIX = "agent-operator/ns/bot/bot-credentials/"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIAdmin]:
    with FakeOpenAIAdmin(admin_key=ADMIN_KEY, projects=[PROJECT, "proj_2"]).in_thread() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAIAdmin) -> FakeOpenAIAdmin:
    """The module's fake, emptied."""
    server.reset()
    return server


def issuer(
    fake: FakeOpenAIAdmin,
    *,
    base_url: str | None = None,
    admin_key: str = ADMIN_KEY,
    project_id: str = PROJECT,
    timeout_seconds: float = 0.5,
    attempts: int = 3,
    backoff_max_seconds: float = 0.01,
    key_lifetime_seconds: int | None = None,
) -> OpenAIAdminIssuer:
    return OpenAIAdminIssuer(
        base_url if base_url is not None else fake.url + "/v1",
        admin_key,
        project_id,
        timeout_seconds=timeout_seconds,
        attempts=attempts,
        backoff_max_seconds=backoff_max_seconds,
        key_lifetime_seconds=key_lifetime_seconds,
    )


def assert_no_key_material(fake: FakeOpenAIAdmin, *texts: str) -> None:
    for text in texts:
        assert ADMIN_KEY not in text
        assert ADMIN_KEY[-4:] not in text  # OpenAI quotes the end of a wrong key
        for minted in fake.minted_keys:
            assert minted not in text


# ------------------------------------------------------------------ round trip


def test_issue_list_revoke_round_trip(fake: FakeOpenAIAdmin) -> None:
    admin = issuer(fake)
    key = admin.issue(PREFIX + "a1")
    other = admin.issue("someone-else")

    assert isinstance(key, IssuedKey)
    assert key.key_id.startswith("svc_acct_")
    assert key.secret.startswith("sk-svcacct-")
    assert fake.live_keys() == {key.secret, other.secret}
    assert admin.list(PREFIX) == [(key.key_id, PREFIX + "a1")]
    assert sorted(admin.list("")) == sorted(
        [(key.key_id, PREFIX + "a1"), (other.key_id, "someone-else")]
    )

    admin.revoke(key.key_id)
    assert fake.live_keys() == {other.secret}
    assert admin.list(PREFIX) == []
    assert fake.minted_keys == [key.secret, other.secret]  # what was minted stays recorded
    create = next(r for r in fake.requests if r.op == "create")
    assert create.json == {"name": PREFIX + "a1"}
    assert create.authorized
    assert_no_key_material(fake, repr(key), str(key), repr(admin), str(admin))


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "/v1//"])
def test_base_url_joined_without_double_slashes(fake: FakeOpenAIAdmin, suffix: str) -> None:
    admin = issuer(fake, base_url=fake.url + suffix)
    admin.revoke(admin.issue("x").key_id)
    assert [r.op for r in fake.requests] == ["create", "delete"]
    assert all(
        r.path.startswith(f"/v1/organization/projects/{PROJECT}/service_accounts")
        and "//" not in r.path
        for r in fake.requests
    )


def test_key_lifetime_is_sent_as_expires_in_seconds(fake: FakeOpenAIAdmin) -> None:
    key = issuer(fake, key_lifetime_seconds=3600).issue("expiring")
    create = next(r for r in fake.requests if r.op == "create")
    assert create.json == {"name": "expiring", "expires_in_seconds": 3600}
    minted = fake.minted[-1]
    assert minted.value == key.secret
    assert minted.expires_at is not None and minted.expires_at - minted.created_at == 3600


def test_list_follows_pages_past_100(fake: FakeOpenAIAdmin) -> None:
    ours = [fake.add_service_account(f"{PREFIX}{i:03d}")[0] for i in range(230)]
    for i in range(40):
        fake.add_service_account(f"other-{i}")
    fake.add_service_account(PREFIX + "in-another-project", "proj_2")
    fake.clear()

    found = issuer(fake).list(PREFIX)

    assert [account_id for account_id, _ in found] == ours
    assert found[5] == (ours[5], f"{PREFIX}005")
    lists = [r for r in fake.requests if r.op == "list"]
    assert len(lists) == 3  # 270 accounts, 100 a page
    everyone = [a.id for a in fake.service_accounts(PROJECT)]
    assert [r.query.get("after") for r in lists] == [None, everyone[99], everyone[199]]
    assert all(r.query["limit"] == "100" for r in lists)


def test_list_of_an_empty_project(fake: FakeOpenAIAdmin) -> None:
    assert issuer(fake).list("") == []


# ------------------------------------------------------------------ revocation


def test_revoke_of_an_account_already_gone_is_success(fake: FakeOpenAIAdmin) -> None:
    admin = issuer(fake)
    key = admin.issue("once")
    admin.revoke(key.key_id)
    admin.revoke(key.key_id)  # again: 404, then the project is checked and exists
    admin.revoke("svc_acct_neverexisted")
    assert fake.live_keys() == set()
    assert fake.calls["delete"] == 3


def test_revoke_in_an_unknown_project_is_refused_not_success(fake: FakeOpenAIAdmin) -> None:
    # a 404 of the delete alone would hide a wrong project: the key would stay alive
    with pytest.raises(IssuerRefused) as caught:
        issuer(fake, project_id="proj_typo").revoke("svc_acct_abc")
    assert caught.value.status == 404
    assert "proj_typo" in str(caught.value)


def test_revoke_retries_5xx_and_timeouts_deletes_are_idempotent(fake: FakeOpenAIAdmin) -> None:
    admin = issuer(fake, timeout_seconds=0.2)
    key = admin.issue("to-delete")
    fake.enqueue(Fault.status(503, op="delete"), Fault.hang(0.6, op="delete"))
    admin.revoke(key.key_id)  # 503, timeout (the delete happens late), 404 -> gone
    assert fake.calls["delete"] == 3
    assert key.secret not in fake.live_keys()


# ------------------------------------------------------------------ retries


def test_429_then_success_is_retried_honouring_retry_after(fake: FakeOpenAIAdmin) -> None:
    admin = issuer(fake, backoff_max_seconds=2.0)
    fake.enqueue(Fault.status(429, retry_after="0.3", op="create"))
    started = time.monotonic()
    key = admin.issue("rate-limited")
    waited = time.monotonic() - started
    assert 0.3 <= waited < 1.5
    assert fake.calls["create"] == 2
    assert fake.live_keys() == {key.secret}


def test_retry_after_is_capped_at_backoff_max(fake: FakeOpenAIAdmin) -> None:
    admin = issuer(fake, backoff_max_seconds=0.05)
    fake.enqueue(Fault.status(429, retry_after="30", op="list"))
    started = time.monotonic()
    assert admin.list("") == []
    assert time.monotonic() - started < 1.0


def test_5xx_exhausted_is_unavailable(fake: FakeOpenAIAdmin) -> None:
    fake.enqueue(*[Fault.status(500, op="list")] * 4)
    with pytest.raises(IssuerUnavailable) as caught:
        issuer(fake, attempts=3).list("")
    assert fake.calls["list"] == 3
    assert caught.value.status == 500
    assert "HTTP 500" in str(caught.value) and "after 3 attempts" in str(caught.value)
    assert "The server had an error" in str(caught.value)


def test_connection_reset_on_list_is_retried(fake: FakeOpenAIAdmin) -> None:
    fake.enqueue(Fault.reset(op="list"))
    assert issuer(fake).list("") == []
    assert fake.calls["list"] == 2


def test_nothing_listening_is_unavailable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    admin = OpenAIAdminIssuer(
        f"http://127.0.0.1:{port}/v1", ADMIN_KEY, PROJECT, attempts=2, backoff_max_seconds=0.01
    )
    with pytest.raises(IssuerUnavailable, match="cannot connect"):
        admin.issue("nobody-home")  # never sent, so a create may be retried


# ------------------------------------------------------------------ create: never twice blindly


def test_timeout_on_create_is_unavailable_and_not_repeated(fake: FakeOpenAIAdmin) -> None:
    admin = issuer(fake, timeout_seconds=0.2)
    fake.enqueue(Fault.after_create_timeout(1.0))
    with pytest.raises(IssuerUnavailable) as caught:
        admin.issue(PREFIX + "lost")
    assert fake.calls["create"] == 1  # no second create
    assert "may have been done" in str(caught.value)
    # what the caller does next: find the account by the name it recorded, revoke it
    orphans = [i for i, n in admin.list(PREFIX + "lost") if n == PREFIX + "lost"]
    assert len(orphans) == 1
    for account_id in orphans:
        admin.revoke(account_id)
    assert fake.live_keys() == set()
    assert_no_key_material(fake, str(caught.value), repr(caught.value))


def test_hang_before_create_is_not_repeated_either(fake: FakeOpenAIAdmin) -> None:
    fake.enqueue(Fault.hang(1.0, op="create"))
    with pytest.raises(IssuerUnavailable):
        issuer(fake, timeout_seconds=0.2).issue("slow")
    assert fake.calls["create"] == 1


def test_reset_on_create_is_not_repeated(fake: FakeOpenAIAdmin) -> None:
    fake.enqueue(Fault.reset(op="create", after_create=True))
    with pytest.raises(IssuerUnavailable):
        issuer(fake).issue("dropped")
    assert fake.calls["create"] == 1
    assert [a.name for a in fake.service_accounts()] == ["dropped"]


def test_proxy_5xx_page_on_create_is_not_repeated(fake: FakeOpenAIAdmin) -> None:
    # a gateway's 502 page says nothing about the backend: it may have made the account
    fake.enqueue(Fault.status(502, op="create", body="<html>502 Bad Gateway</html>"))
    with pytest.raises(IssuerUnavailable) as caught:
        issuer(fake).issue("behind-a-proxy")
    assert fake.calls["create"] == 1
    assert "<html>" not in str(caught.value)


def test_api_5xx_on_create_is_retried(fake: FakeOpenAIAdmin) -> None:
    fake.enqueue(Fault.status(500, op="create"), Fault.status(503, op="create"))
    key = issuer(fake).issue("second-time-lucky")
    assert fake.calls["create"] == 3
    assert fake.live_keys() == {key.secret}


def test_a_retried_create_deletes_the_account_a_failed_attempt_made(
    fake: FakeOpenAIAdmin,
) -> None:
    # the nastiest 5xx: the account was made, then the API answered an error
    fake.enqueue(Fault.status(500, op="create", after_create=True))
    key = issuer(fake).issue(PREFIX + "dup")
    assert fake.calls["create"] == 2
    assert [(a.id, a.name) for a in fake.service_accounts()] == [(key.key_id, PREFIX + "dup")]
    assert fake.live_keys() == {key.secret}
    assert len(fake.minted_keys) == 2


# ------------------------------------------------------------------ refusals


def test_wrong_admin_key_is_refused_without_retry(fake: FakeOpenAIAdmin) -> None:
    wrong = "sk-admin-WRONGwrongWRONG9876"
    with pytest.raises(IssuerRefused) as caught:
        issuer(fake, admin_key=wrong).issue("nope")
    assert caught.value.status == 401
    assert fake.calls["create"] == 1
    text = str(caught.value)
    assert "invalid_api_key" in text and "Incorrect API key provided" in text
    assert wrong[-4:] not in text and wrong[:8] not in text  # OpenAI quotes part of it
    assert fake.service_accounts() == []


def test_unknown_project_is_refused(fake: FakeOpenAIAdmin) -> None:
    admin = issuer(fake, project_id="proj_missing")
    for call in (lambda: admin.issue("x"), lambda: admin.list("")):
        with pytest.raises(IssuerRefused) as caught:
            call()
        assert caught.value.status == 404
    assert fake.calls["create"] == 1 and fake.calls["list"] == 1


def test_archived_project_is_refused(fake: FakeOpenAIAdmin) -> None:
    fake.archived.add(PROJECT)
    with pytest.raises(IssuerRefused, match="HTTP 400"):
        issuer(fake).issue("x")


def test_redirects_are_not_followed(fake: FakeOpenAIAdmin) -> None:
    target = fake.url

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Quiet: this test reads no server log."""

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect) as redirector:
        thread = threading.Thread(target=redirector.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{redirector.server_address[1]}/v1"
            with pytest.raises(IssuerRefused, match="redirect"):
                issuer(fake, base_url=base).issue("elsewhere")
        finally:
            redirector.shutdown()
    assert fake.requests == []  # the admin key never went there


def test_invalid_settings_are_refused_without_quoting_the_key() -> None:
    bad_key = "sk-admin-with\nnewline"
    with pytest.raises(ValueError) as caught:
        OpenAIAdminIssuer("https://api.openai.com/v1", bad_key, PROJECT)
    assert bad_key not in str(caught.value) and "newline" not in str(caught.value)
    with pytest.raises(ValueError):
        OpenAIAdminIssuer("api.openai.com/v1", ADMIN_KEY, PROJECT)
    with pytest.raises(ValueError):
        OpenAIAdminIssuer("https://api.openai.com/v1", ADMIN_KEY, "")


# ------------------------------------------------------------------ no key material anywhere


def test_no_key_material_in_errors_reprs_or_logs(
    fake: FakeOpenAIAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = issuer(fake, timeout_seconds=0.2)
    texts: list[str] = []
    keys = [admin.issue(f"k{i}") for i in range(2)]
    faults = [
        Fault.status(429, retry_after="0", op="create"),
        Fault.status(500, op="create", after_create=True),
        Fault.status(400, message=f"echoing {keys[0].secret} and {ADMIN_KEY}", op="create"),
        Fault.after_create_timeout(0.5),
        Fault.status(502, op="create", body=f"<p>{ADMIN_KEY}</p>"),
    ]
    for fault in faults:
        fake.enqueue(fault)
        try:
            keys.append(admin.issue("kx"))
        except (IssuerUnavailable, IssuerRefused) as exc:
            texts += [str(exc), repr(exc), repr(exc.args)]
    with pytest.raises(IssuerRefused) as caught:
        issuer(fake, admin_key=ADMIN_KEY + "x").list("")
    texts += [str(caught.value), repr(caught.value)]
    texts += [repr(admin), str(admin), *(repr(k) for k in keys), *(str(k) for k in keys)]
    texts += [record.getMessage() for record in caplog.records]
    assert len(texts) > 10
    assert any("sk-<redacted>" in t for t in texts)
    assert_no_key_material(fake, *texts)


HOSTILE_ANSWERS = {
    "not JSON": b"<html>hello</html>",
    "not UTF-8": b"\xff\xfe\x00garbage",
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "huge": b'{"data": ["' + b"x" * (5 * 1024 * 1024) + b'"]}',
    "wrong shape": b'{"data": "not a list", "has_more": "maybe"}',
}


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS, ids=list(HOSTILE_ANSWERS))
def test_hostile_answers_fail_as_issuer_errors_never_as_crashes(answer: str) -> None:
    """An admin endpoint (or whatever answers there) sending garbage with a 200:
    every call fails with a safe issuer error, bounded in memory and time."""
    body = HOSTILE_ANSWERS[answer]

    class Garbage(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            """Quiet: this test reads no server log."""

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}/v1"
            admin = OpenAIAdminIssuer(base, ADMIN_KEY, PROJECT, attempts=1, timeout_seconds=5)
            started = time.monotonic()
            for call in (lambda: admin.issue("x"), lambda: admin.list("")):
                with pytest.raises((IssuerUnavailable, IssuerRefused)) as caught:
                    call()
                text = str(caught.value)
                assert len(text) < 400 and ADMIN_KEY not in text and "x" * 100 not in text
            assert time.monotonic() - started < 10
        finally:
            server.shutdown()
