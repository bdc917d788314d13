"""The fake OpenAI Admin API speaks the real wire format.

The official `openai` SDK (its `admin.organization.projects.service_accounts`
resource, generated from OpenAI's OpenAPI spec) parses every answer into its
typed models and follows the list's cursor pages: if it accepts them, the
shapes are right. Faults and error bodies are checked with a raw client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.fakes.openai_admin import FakeOpenAIAdmin, Fault, spawn
from tests.fakes.upstream import FakeUpstream

KEY = "sk-admin-fake-0123456789"
ACCOUNTS = "/v1/organization/projects/proj_1/service_accounts"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def admin() -> AsyncIterator[FakeOpenAIAdmin]:
    async with FakeOpenAIAdmin(admin_key=KEY, projects=["proj_1", "proj_2"]) as fake:
        yield fake


@pytest.fixture
async def sdk(admin: FakeOpenAIAdmin) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        api_key="unused", admin_api_key=KEY, base_url=admin.url + "/v1", max_retries=0
    )
    async with client:
        yield client


async def call(
    admin: FakeOpenAIAdmin, method: str, path: str, body: Any = None, key: str | None = KEY
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, admin.url + path, json=body, headers=headers) as response,
    ):
        raw = await response.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw.decode()
        return response.status, payload, dict(response.headers)


def assert_openai_error(payload: Any) -> None:
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert isinstance(payload["error"]["message"], str)


# ------------------------------------------------------------------ the SDK parses it


async def test_create_retrieve_delete_parsed_by_the_sdk(
    admin: FakeOpenAIAdmin, sdk: openai.AsyncOpenAI
) -> None:
    accounts = sdk.admin.organization.projects.service_accounts
    created = await accounts.create("proj_1", name="agent-1")
    assert created.id.startswith("svc_acct_") and created.name == "agent-1"
    assert created.role == "member" and created.object == "organization.project.service_account"
    assert created.api_key is not None and created.api_key.value.startswith("sk-svcacct-")
    assert created.api_key.id.startswith("key_") and created.api_key.expires_at is None
    assert admin.live_keys() == {created.api_key.value}

    fetched = await accounts.retrieve(created.id, project_id="proj_1")
    assert (fetched.id, fetched.name, fetched.role) == (created.id, "agent-1", "member")
    assert "api_key" not in fetched.model_dump()  # the value is shown once only

    deleted = await accounts.delete(created.id, project_id="proj_1")
    assert (deleted.id, deleted.deleted) == (created.id, True)
    assert deleted.object == "organization.project.service_account.deleted"
    assert admin.live_keys() == set() and admin.minted_keys == [created.api_key.value]
    with pytest.raises(openai.NotFoundError):
        await accounts.delete(created.id, project_id="proj_1")
    with pytest.raises(openai.NotFoundError):
        await accounts.retrieve(created.id, project_id="proj_1")


async def test_list_pages_followed_by_the_sdk(
    admin: FakeOpenAIAdmin, sdk: openai.AsyncOpenAI
) -> None:
    ids = [admin.add_service_account(f"sa-{i}")[0] for i in range(45)]
    admin.add_service_account("elsewhere", "proj_2")
    accounts = sdk.admin.organization.projects.service_accounts
    assert [a.id async for a in accounts.list("proj_1", limit=20)] == ids
    assert admin.calls["list"] == 3

    page = await accounts.list("proj_1")  # default limit: 20
    assert len(page.data) == 20 and page.has_more and page.last_id == ids[19]
    last = await accounts.list("proj_1", after=ids[39], limit=100)
    assert [a.id for a in last.data] == ids[40:] and last.has_more is False


async def test_another_key_and_expiry_parsed_by_the_sdk(
    admin: FakeOpenAIAdmin, sdk: openai.AsyncOpenAI
) -> None:
    accounts = sdk.admin.organization.projects.service_accounts
    before = int(time.time())
    created = await accounts.create("proj_1", name="expiring", expires_in_seconds=600)
    assert created.api_key is not None and created.api_key.expires_at is not None
    assert before + 600 <= created.api_key.expires_at <= int(time.time()) + 600
    second = await accounts.api_keys.create(created.id, project_id="proj_1", name="second")
    assert second.value.startswith("sk-svcacct-") and second.name == "second"
    assert admin.live_keys() == {created.api_key.value, second.value}
    await accounts.delete(created.id, project_id="proj_1")
    assert admin.live_keys() == set()  # deleting the account kills all its keys

    bare = await accounts.create("proj_1", name="bare", create_service_account_only=True)
    assert bare.api_key is None and bare.role == "none"


async def test_expired_keys_are_not_live(admin: FakeOpenAIAdmin) -> None:
    _, value = admin.add_service_account("short", expires_in=1)
    assert admin.live_keys() == {value}
    admin.minted[0].expires_at = int(time.time()) - 1
    assert admin.live_keys() == set()


async def test_errors_are_raised_by_the_sdk_as_openai_does(
    admin: FakeOpenAIAdmin, sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.NotFoundError):
        await sdk.admin.organization.projects.service_accounts.list("proj_unknown")
    wrong = sdk.with_options(admin_api_key="sk-admin-wrong-4242")
    with pytest.raises(openai.AuthenticationError) as caught:
        await wrong.admin.organization.projects.service_accounts.create("proj_1", name="x")
    assert "4242" in str(caught.value) and "sk-admin-wrong-4242" not in str(caught.value)
    with pytest.raises(openai.BadRequestError):
        await sdk.admin.organization.projects.service_accounts.create(
            "proj_1", name="x", create_service_account_only=True, expires_in_seconds=60
        )
    assert admin.service_accounts() == []


# ------------------------------------------------------------------ raw wire


async def test_error_shapes_and_validation(admin: FakeOpenAIAdmin) -> None:
    status, payload, _ = await call(admin, "GET", ACCOUNTS, key=None)
    assert status == 401 and payload["error"]["message"].startswith("You didn't provide")
    assert_openai_error(payload)
    status, payload, _ = await call(admin, "GET", ACCOUNTS, key="sk-admin-nope-nope-1234")
    assert status == 401 and payload["error"]["code"] == "invalid_api_key"
    status, payload, _ = await call(admin, "GET", "/v1/organization/projects/p9/service_accounts")
    assert status == 404
    for query in ("?limit=0", "?limit=101", "?limit=x", "?after=svc_acct_never"):
        status, payload, _ = await call(admin, "GET", ACCOUNTS + query)
        assert status == 400, query
        assert_openai_error(payload)
    for body in (None, {}, {"name": ""}, {"name": 3}, {"name": "x", "expires_in_seconds": 0}):
        status, payload, _ = await call(admin, "POST", ACCOUNTS, body)
        assert status == 400, body
        assert_openai_error(payload)
    status, payload, _ = await call(admin, "GET", "/v1/organization/nothing")
    assert status == 404 and payload["error"]["message"] == (
        "Invalid URL (GET /v1/organization/nothing)"
    )
    status, _, _ = await call(admin, "PUT", ACCOUNTS)
    assert status == 405
    admin.archived.add("proj_1")
    assert (await call(admin, "POST", ACCOUNTS, {"name": "x"}))[0] == 400
    assert admin.minted_keys == []


async def test_list_cursor_survives_the_deletion_of_its_account(admin: FakeOpenAIAdmin) -> None:
    ids = [admin.add_service_account(f"sa-{i}")[0] for i in range(3)]
    assert (await call(admin, "DELETE", f"{ACCOUNTS}/{ids[0]}"))[0] == 200
    status, page, _ = await call(admin, "GET", f"{ACCOUNTS}?after={ids[0]}")
    assert status == 200 and [a["id"] for a in page["data"]] == ids[1:]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (ids[1], ids[2], False)


# ------------------------------------------------------------------ faults


async def test_status_faults_are_scoped_to_their_operation(admin: FakeOpenAIAdmin) -> None:
    admin.enqueue(Fault.status(429, retry_after="2", op="create"), Fault.status(503))
    status, payload, headers = await call(admin, "GET", ACCOUNTS)  # the unscoped 503
    assert status == 503 and payload["error"]["type"] == "server_error"
    assert (await call(admin, "GET", ACCOUNTS))[0] == 200  # the 429 waits for a create
    status, payload, headers = await call(admin, "POST", ACCOUNTS, {"name": "x"})
    assert status == 429 and headers["Retry-After"] == "2"
    assert payload["error"]["code"] == "rate_limit_exceeded"
    assert admin.service_accounts() == []
    assert (await call(admin, "POST", ACCOUNTS, {"name": "x"}))[0] == 200
    assert admin.calls == {"list": 2, "create": 2}


async def test_a_proxy_page_fault(admin: FakeOpenAIAdmin) -> None:
    admin.enqueue(Fault.status(502, body="<html>Bad Gateway</html>"))
    status, payload, headers = await call(admin, "GET", ACCOUNTS)
    assert (status, payload) == (502, "<html>Bad Gateway</html>")
    assert headers["Content-Type"].startswith("text/html")


async def test_reset_and_hang(admin: FakeOpenAIAdmin) -> None:
    # a POST: aiohttp repeats an idempotent request once after a dropped connection
    admin.enqueue(Fault.reset(op="create"))
    with pytest.raises(aiohttp.ClientError):
        await call(admin, "POST", ACCOUNTS, {"name": "x"})
    assert admin.service_accounts() == []
    admin.enqueue(Fault.hang(0.3, op="list"))
    started = time.monotonic()
    assert (await call(admin, "GET", ACCOUNTS))[0] == 200
    assert time.monotonic() - started >= 0.3


async def test_after_create_faults_create_first(admin: FakeOpenAIAdmin) -> None:
    admin.enqueue(Fault.after_create_timeout(5.0))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(call(admin, "POST", ACCOUNTS, {"name": "lost"}), 0.3)
    [account] = admin.service_accounts()  # made, though the client never heard of it
    assert account.name == "lost" and admin.live_keys() == set(account.keys)
    admin.enqueue(Fault.status(500, op="create", after_create=True))
    status, payload, _ = await call(admin, "POST", ACCOUNTS, {"name": "twice"})
    assert status == 500 and "api_key" not in payload
    assert [a.name for a in admin.service_accounts()] == ["lost", "twice"]
    admin.enqueue(Fault.reset(after_create=True))
    with pytest.raises(aiohttp.ClientError):
        await call(admin, "POST", ACCOUNTS, {"name": "dropped"})
    assert len(admin.minted_keys) == 3
    with pytest.raises(ValueError):
        Fault.status(500, op="list", after_create=True)


# ------------------------------------------------------------------ the linked upstream


async def test_linked_upstream_accepts_exactly_the_live_keys(admin: FakeOpenAIAdmin) -> None:
    async with FakeUpstream() as upstream:
        admin.link_upstream(upstream)
        chat = upstream.url + "/v1/chat/completions"

        async def status_with(key: str) -> int:
            headers = {"Authorization": f"Bearer {key}"}
            async with (
                aiohttp.ClientSession() as session,
                session.post(chat, json=CHAT, headers=headers) as response,
            ):
                return response.status

        _, created, _ = await call(admin, "POST", ACCOUNTS, {"name": "a"})
        value = created["api_key"]["value"]
        assert await status_with(value) == 200
        assert await status_with("sk-svcacct-made-up") == 401
        assert (await call(admin, "DELETE", f"{ACCOUNTS}/{created['id']}"))[0] == 200
        assert await status_with(value) == 401  # revoked at the issuer: refused upstream


# ------------------------------------------------------------------ thread and process


def test_in_thread_for_synchronous_clients() -> None:
    with FakeOpenAIAdmin(admin_key=KEY).in_thread() as admin:
        client = openai.OpenAI(
            api_key="unused", admin_api_key=KEY, base_url=admin.url + "/v1", max_retries=0
        )
        with client:
            accounts = client.admin.organization.projects.service_accounts
            created = accounts.create("proj_1", name="sync")
            assert created.api_key is not None
            assert admin.live_keys() == {created.api_key.value}
            admin.enqueue(Fault.after_create_timeout(30))  # left hanging: exit must not wait
            with pytest.raises(openai.APITimeoutError):
                accounts.create("proj_1", name="hung", timeout=0.2)


async def test_standalone_process_and_control_endpoints() -> None:
    async with FakeUpstream() as upstream:

        def scenario() -> None:
            with spawn(admin_key=KEY, projects=("proj_1",), upstream_url=upstream.url) as ctl:
                assert upstream.valid_keys == set()  # told at start: nothing is live
                client = openai.OpenAI(
                    api_key="unused", admin_api_key=KEY, base_url=ctl.url + "/v1", max_retries=0
                )
                with client:
                    accounts = client.admin.organization.projects.service_accounts
                    first = accounts.create("proj_1", name="one")
                    assert first.api_key is not None
                    assert upstream.valid_keys == {first.api_key.value}
                    ctl.enqueue(Fault.status(503, op="delete"))
                    with pytest.raises(openai.InternalServerError):
                        accounts.delete(first.id, project_id="proj_1")
                    accounts.delete(first.id, project_id="proj_1")
                assert upstream.valid_keys == set()
                state = ctl.state()
                assert state["projects"]["proj_1"]["service_accounts"] == []
                assert ctl.minted_keys() == [first.api_key.value]
                assert state["minted_keys"][0]["live"] is False
                assert ctl.live_keys() == set()
                assert state["calls"] == {"create": 1, "delete": 2}
                ctl.clear()
                assert ctl.state()["calls"] == {}

        await asyncio.to_thread(scenario)
