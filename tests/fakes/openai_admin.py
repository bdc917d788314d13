"""A fake of the OpenAI Admin API's project service accounts, stateful, in its wire format.

In-process (tests)::

    async with FakeOpenAIAdmin(admin_key="sk-admin-test", projects=["proj_1"]) as admin:
        admin.enqueue(Fault.status(429, retry_after="1", op="create"))
        ...                                   # base_url = admin.url + "/v1"
        assert admin.live_keys() <= set(admin.minted_keys)

From synchronous code (the fake runs its own event loop in a thread)::

    with FakeOpenAIAdmin().in_thread() as admin: ...

Standalone (e2e: the operator under test is another process)::

    python -m tests.fakes.openai_admin --host 127.0.0.1 --port 0 \\
        --admin-key K --project proj_1 [--upstream-url http://127.0.0.1:PORT]
    # first stdout line: "listening on http://127.0.0.1:PORT"
    # control: GET /_fake/state, GET /_fake/live-keys, GET /_fake/requests,
    #          POST /_fake/enqueue, POST /_fake/link-upstream {"url"}, POST /_fake/clear
    # `AdminControl(url)` calls them synchronously; `spawn()` starts the process.

Endpoints, under /v1/organization/projects/{project_id}/service_accounts (as in
openai/openai-openapi and openai-python's `admin.organization.projects`): GET
(list: `limit` 1..100, default 20; `after`; `has_more`), POST (create; with
`create_service_account_only` and `expires_in_seconds`), GET/POST/DELETE
`/{id}` (retrieve, update, delete) and POST `/{id}/api_keys` (another key).
`Authorization: Bearer <admin key>` is required (401 otherwise); an unknown
project answers 404, an archived one 400. Errors are `{"error": {"message",
"type", "param", "code"}}`; the messages are the fake's own wording.

Every key minted is kept in `minted`; a key is live while its account
exists (and it has not expired). A linked FakeUpstream (`link_upstream`, or
`--upstream-url` for a standalone one) is told the live keys after every
change, before the answer is sent, so it accepts exactly the keys that would
work at OpenAI.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from tests.fakes.server import serve

if TYPE_CHECKING:
    from tests.fakes.upstream import FakeUpstream

JSON_HEADERS = {"Content-Type": "application/json"}
MAX_EXPIRY = 31_536_000  # expires_in_seconds: 1 s to 365 days
OPS = ("list", "create", "retrieve", "update", "delete", "create_key")
_PATH = re.compile(
    r"^/v1/organization/projects/(?P<project>[^/]+)/service_accounts"
    r"(?:/(?P<account>[^/]+)(?P<keys>/api_keys)?)?/?$"
)
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure, consumed by the next request of `op` (any op when None).

    kind: "status" (error `code` in OpenAI's error shape, or `body` verbatim as
    text/html, like a proxy's page; Retry-After when `retry_after` is set),
    "reset" (TCP reset, no answer), "hang" (sleep `seconds`, then answer).
    `after_create`: the create is done first (account and key exist), then the
    fault strikes: the answer a client waits for never comes or is an error.
    """

    kind: str
    code: int = 0
    retry_after: str | None = None
    message: str | None = None
    seconds: float = 0.0
    op: str | None = None
    after_create: bool = False
    body: str | None = None

    @classmethod
    def status(
        cls,
        code: int,
        retry_after: str | None = None,
        message: str | None = None,
        *,
        op: str | None = None,
        after_create: bool = False,
        body: str | None = None,
    ) -> Fault:
        return cls(
            "status", code, retry_after, message, op=op, after_create=after_create, body=body
        )

    @classmethod
    def reset(cls, *, op: str | None = None, after_create: bool = False) -> Fault:
        return cls("reset", op=op, after_create=after_create)

    @classmethod
    def hang(cls, seconds: float, *, op: str | None = None) -> Fault:
        return cls("hang", seconds=seconds, op=op)

    @classmethod
    def after_create_timeout(cls, seconds: float) -> Fault:
        """Create the account, then answer only after `seconds` (the client gives up)."""
        return cls("hang", seconds=seconds, op="create", after_create=True)

    def __post_init__(self) -> None:
        if self.op is not None and self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}")
        if self.after_create and self.op not in (None, "create"):
            raise ValueError("after_create faults strike creates only")
        if self.after_create and self.op is None:
            object.__setattr__(self, "op", "create")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        return cls(**data)


@dataclass
class MintedKey:
    """A key value the fake handed out; `expires_at` in Unix seconds."""

    value: str
    id: str
    service_account_id: str
    project_id: str
    name: str
    created_at: int
    expires_at: int | None = None


@dataclass
class ServiceAccount:
    id: str
    name: str
    project_id: str
    role: str
    created_at: int
    keys: list[str] = field(default_factory=list)  # values of its keys

    def wire(self) -> dict[str, Any]:
        return {
            "object": "organization.project.service_account",
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """A request as the fake received it (the Authorization header is not kept)."""

    op: str | None
    method: str
    path: str
    query: dict[str, str]
    json: Any
    authorized: bool


class _Refusal(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = (
            status,
            message,
            kind,
            code,
            param,
        )


class FakeOpenAIAdmin:
    """The fake Admin API: an aiohttp server started by `async with` (or `in_thread()`).

    Its state is guarded by a lock: a test thread may read and change it while
    the server's loop answers requests.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        admin_key: str = "sk-admin-fake",
        projects: tuple[str, ...] | list[str] = ("proj_1",),
    ) -> None:
        self.host, self.port = host, port
        self.admin_key = admin_key
        self.projects: dict[str, dict[str, ServiceAccount]] = {p: {} for p in projects}
        self.archived: set[str] = set()
        self.minted: list[MintedKey] = []
        self.requests: list[AdminRequest] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.upstreams: list[FakeUpstream] = []
        self.upstream_urls: list[str] = []
        self._order: dict[str, int] = {}  # account id -> creation order, kept after deletion
        self._faults: collections.deque[Fault] = collections.deque()
        self._lock = threading.RLock()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._publishing = asyncio.Lock()
        self._inflight: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> FakeOpenAIAdmin:
        app = web.Application()
        app.router.add_get("/_fake/state", self._control_state)
        app.router.add_get("/_fake/live-keys", self._control_live_keys)
        app.router.add_get("/_fake/requests", self._control_requests)
        app.router.add_post("/_fake/enqueue", self._control_enqueue)
        app.router.add_post("/_fake/link-upstream", self._control_link)
        app.router.add_post("/_fake/clear", self._control_clear)
        app.router.add_route("*", "/{tail:.*}", self._api)
        self._publishing = asyncio.Lock()  # bound to the loop that serves
        self._runner, self.port = await serve(app, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        # answers still held back by a hang would outlive the loop: cancel them
        pending = [t for t in self._inflight if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[FakeOpenAIAdmin]:
        """Serve from a daemon thread with its own event loop, for synchronous tests."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-openai-admin", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.__aenter__(), loop).result(10)
            try:
                yield self
            finally:
                asyncio.run_coroutine_threadsafe(self.__aexit__(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    # ------------------------------------------------------------ test API

    def enqueue(self, *faults: Fault) -> None:
        """Queue faults; each is consumed by the next request of its op, in order."""
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        """Forget recorded requests, call counts and pending faults (accounts stay)."""
        with self._lock:
            self.requests.clear()
            self.calls.clear()
            self._faults.clear()

    def reset(self) -> None:
        """Back to empty projects: no accounts, minted keys, requests or faults."""
        with self._lock:
            for accounts in self.projects.values():
                accounts.clear()
            self.archived.clear()
            self.minted.clear()
            self._order.clear()
            self.clear()
            self._publish_local()

    def link_upstream(self, upstream: FakeUpstream) -> None:
        """Keep `upstream.valid_keys` equal to the live keys from now on."""
        with self._lock:
            self.upstreams.append(upstream)
            upstream.valid_keys = self.live_keys()

    @property
    def minted_keys(self) -> list[str]:
        """Every key value ever handed out, in order."""
        with self._lock:
            return [k.value for k in self.minted]

    def live_keys(self) -> set[str]:
        """Key values that would work now: their account exists and they have not expired."""
        now = time.time()
        with self._lock:
            return {
                k.value
                for k in self.minted
                if k.service_account_id in self.projects.get(k.project_id, {})
                and (k.expires_at is None or k.expires_at > now)
            }

    def service_accounts(self, project_id: str | None = None) -> list[ServiceAccount]:
        """Copies of the accounts of a project (all projects when None)."""
        with self._lock:
            ids = [project_id] if project_id is not None else list(self.projects)
            return [
                ServiceAccount(a.id, a.name, a.project_id, a.role, a.created_at, list(a.keys))
                for p in ids
                for a in self.projects.get(p, {}).values()
            ]

    def add_service_account(
        self, name: str, project_id: str | None = None, *, expires_in: int | None = None
    ) -> tuple[str, str]:
        """Create an account directly (test setup); returns (account id, key value)."""
        with self._lock:
            project = project_id if project_id is not None else next(iter(self.projects))
            account, key = self._create(project, name, expires_in)
            assert key is not None
            self._publish_local()
            return account.id, key.value

    def state(self) -> dict[str, Any]:
        """Everything, JSON-ready: projects and accounts, minted keys (with `live`), calls."""
        with self._lock:
            live = self.live_keys()
            return {
                "projects": {
                    p: {
                        "archived": p in self.archived,
                        "service_accounts": [asdict(a) for a in accounts.values()],
                    }
                    for p, accounts in self.projects.items()
                },
                "minted_keys": [{**asdict(k), "live": k.value in live} for k in self.minted],
                "live_keys": sorted(live),
                "calls": dict(self.calls),
            }

    # ------------------------------------------------------------ request path

    async def _api(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        raw = await request.read()
        payload = _parse(raw)
        match = _PATH.match(request.path)
        op = _op(request.method, match)
        authorized = request.headers.get("Authorization") == f"Bearer {self.admin_key}"
        with self._lock:
            self.requests.append(
                AdminRequest(
                    op, request.method, request.path, dict(request.query), payload, authorized
                )
            )
            if op is not None:
                self.calls[op] += 1
            fault = self._take_fault(op)
        if fault is not None and not fault.after_create:
            if fault.kind == "reset":
                return _reset(request)
            if fault.kind == "status":
                return _fault_response(fault)
            await asyncio.sleep(fault.seconds)
        try:
            body = self._handle(request, match, op, payload)
        except _Refusal as err:
            return _error(err.status, err.message, err.kind, err.code, err.param)
        if op in ("create", "delete", "create_key"):
            await self._publish_remote()
        if fault is not None and fault.after_create:
            if fault.kind == "reset":
                return _reset(request)
            if fault.kind == "status":
                return _fault_response(fault)
            await asyncio.sleep(fault.seconds)
        return web.Response(body=json.dumps(body), headers=JSON_HEADERS)

    def _take_fault(self, op: str | None) -> Fault | None:
        for fault in self._faults:
            if fault.op is None or fault.op == op:
                self._faults.remove(fault)
                return fault
        return None

    def _handle(
        self, request: web.Request, match: re.Match[str] | None, op: str | None, payload: Any
    ) -> dict[str, Any]:
        if match is None:
            raise _Refusal(404, f"Invalid URL ({request.method} {request.path})")
        if op is None:
            raise _Refusal(405, f"Invalid method for URL ({request.method} {request.path})")
        auth = request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise _Refusal(401, _NO_KEY)
        if auth[7:].strip() != self.admin_key:
            presented = auth[7:].strip()
            raise _Refusal(
                401,
                f"Incorrect API key provided: {_redacted(presented)}. You can "
                "find your API key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        project = match.group("project")
        with self._lock:
            if project not in self.projects:
                raise _Refusal(404, f"No project found with id '{project}'.")
            if project in self.archived:
                raise _Refusal(400, f"Project '{project}' is archived.")
            account_id = match.group("account")
            if op == "list":
                return self._list(project, request.query)
            if op == "create":
                return self._create_wire(project, payload)
            account = self.projects[project].get(account_id or "")
            if account is None:
                raise _Refusal(404, f"No service account found with id '{account_id}'.")
            if op == "retrieve":
                return account.wire()
            if op == "update":
                return self._update(account, payload)
            if op == "delete":
                del self.projects[project][account.id]
                self._publish_local()
                return {
                    "object": "organization.project.service_account.deleted",
                    "id": account.id,
                    "deleted": True,
                }
            return self._create_key(account, payload)

    def _list(self, project: str, query: Any) -> dict[str, Any]:
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            raise _Refusal(400, "Invalid 'limit': expected an integer.", param="limit") from None
        if not 1 <= limit <= 100:
            raise _Refusal(
                400, f"Invalid 'limit': {limit} is not between 1 and 100.", param="limit"
            )
        after = query.get("after")
        start = -1
        if after is not None:
            if after not in self._order:
                raise _Refusal(400, f"Invalid 'after': no object with id '{after}'.", param="after")
            start = self._order[after]
        rest = [a for a in self.projects[project].values() if self._order[a.id] > start]
        page = rest[:limit]
        return {
            "object": "list",
            "data": [a.wire() for a in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(rest) > limit,
        }

    def _create_wire(self, project: str, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise _Refusal(400, "We could not parse the JSON body of your request.")
        name = payload.get("name")
        if not isinstance(name, str) or not name:
            raise _Refusal(400, "Missing required parameter: 'name'.", param="name")
        only = payload.get("create_service_account_only")
        if only is not None and not isinstance(only, bool):
            raise _Refusal(
                400,
                "Invalid type for 'create_service_account_only'.",
                param="create_service_account_only",
            )
        expires = _expiry(payload)
        if only and expires is not None:
            raise _Refusal(
                400,
                "'expires_in_seconds' cannot be set with 'create_service_account_only'.",
                param="expires_in_seconds",
            )
        account, key = self._create(project, name, expires, key=not only)
        self._publish_local()
        return {**account.wire(), "api_key": _key_wire(key) if key is not None else None}

    def _create(
        self, project: str, name: str, expires: int | None, *, key: bool = True
    ) -> tuple[ServiceAccount, MintedKey | None]:
        now = int(time.time())
        account = ServiceAccount(
            f"svc_acct_{secrets.token_hex(12)}", name, project, "member" if key else "none", now
        )
        self._order[account.id] = len(self._order)
        self.projects[project][account.id] = account
        return account, self._mint(account, "Secret Key", expires) if key else None

    def _mint(self, account: ServiceAccount, name: str, expires: int | None) -> MintedKey:
        now = int(time.time())
        minted = MintedKey(
            f"sk-svcacct-{secrets.token_urlsafe(36)}",
            f"key_{secrets.token_hex(8)}",
            account.id,
            account.project_id,
            name,
            now,
            now + expires if expires is not None else None,
        )
        self.minted.append(minted)
        account.keys.append(minted.value)
        return minted

    def _update(self, account: ServiceAccount, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise _Refusal(400, "We could not parse the JSON body of your request.")
        if isinstance(payload.get("name"), str) and payload["name"]:
            account.name = payload["name"]
        if payload.get("role") in ("member", "owner"):
            account.role = payload["role"]
        return account.wire()

    def _create_key(self, account: ServiceAccount, payload: Any) -> dict[str, Any]:
        payload = payload if isinstance(payload, dict) else {}
        name = payload.get("name") if isinstance(payload.get("name"), str) else "Secret Key"
        key = self._mint(account, name, _expiry(payload))
        self._publish_local()
        return _key_wire(key)

    # ------------------------------------------------------------ the linked upstreams

    def _publish_local(self) -> None:
        live = self.live_keys()
        for upstream in self.upstreams:
            upstream.valid_keys = set(live)

    async def _publish_remote(self) -> None:
        # serialised, and each sends the set as it is when sent: the last one wins
        if not self.upstream_urls:
            return
        async with self._publishing:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            live = sorted(self.live_keys())
            for url in list(self.upstream_urls):
                async with self._session.post(
                    url.rstrip("/") + "/_fake/valid-keys", json=live
                ) as response:
                    response.raise_for_status()

    # ------------------------------------------------------------ control (out of process)

    async def _control_state(self, _: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _control_live_keys(self, _: web.Request) -> web.Response:
        return web.json_response(sorted(self.live_keys()))

    async def _control_requests(self, _: web.Request) -> web.Response:
        with self._lock:
            return web.json_response([asdict(r) for r in self.requests])

    async def _control_enqueue(self, request: web.Request) -> web.Response:
        self.enqueue(*[Fault.from_json(item) for item in await request.json()])
        with self._lock:
            return web.json_response({"queued": len(self._faults)})

    async def _control_link(self, request: web.Request) -> web.Response:
        url = (await request.json())["url"]
        with self._lock:
            self.upstream_urls.append(url)
        await self._publish_remote()
        return web.json_response({"linked": self.upstream_urls})

    async def _control_clear(self, _: web.Request) -> web.Response:
        self.clear()
        return web.json_response({"cleared": True})


# ---------------------------------------------------------------- wire helpers


def _op(method: str, match: re.Match[str] | None) -> str | None:
    if match is None:
        return None
    if match.group("keys"):
        return "create_key" if method == "POST" else None
    if match.group("account"):
        return {"GET": "retrieve", "POST": "update", "DELETE": "delete"}.get(method)
    return {"GET": "list", "POST": "create"}.get(method)


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _expiry(payload: dict[str, Any]) -> int | None:
    value = payload.get("expires_in_seconds")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_EXPIRY:
        raise _Refusal(
            400,
            f"Invalid 'expires_in_seconds': must be an integer from 1 to {MAX_EXPIRY}.",
            param="expires_in_seconds",
        )
    return value


def _key_wire(key: MintedKey) -> dict[str, Any]:
    return {
        "object": "organization.project.service_account.api_key",
        "value": key.value,
        "name": key.name,
        "created_at": key.created_at,
        "id": key.id,
        "expires_at": key.expires_at,
    }


def _redacted(key: str) -> str:
    """As OpenAI quotes a wrong key: its start and its last four characters."""
    return key[:5] + "*" * max(len(key) - 9, 4) + key[-4:] if len(key) > 12 else "****"


def _error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    retry_after: str | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    headers = {**JSON_HEADERS, "x-request-id": f"req_{secrets.token_hex(8)}"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return web.Response(status=status, body=json.dumps(body), headers=headers)


def _fault_response(fault: Fault) -> web.Response:
    if fault.body is not None:
        headers = {"Content-Type": "text/html"}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        return web.Response(status=fault.code, text=fault.body, headers=headers)
    if fault.code == 429:
        kind, code, text = "requests", "rate_limit_exceeded", "Rate limit reached for requests."
    elif fault.code >= 500:
        kind, code, text = "server_error", None, "The server had an error processing your request."
    else:
        kind, code, text = "invalid_request_error", None, "Error."
    return _error(fault.code, fault.message or text, kind, code, None, fault.retry_after)


def _reset(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: close() sends RST
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response()  # never sent: the transport is gone


# ---------------------------------------------------------------- standalone


class AdminControl:
    """Synchronous client of a standalone fake's control endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=JSON_HEADERS
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def state(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_fake/state"))

    def live_keys(self) -> set[str]:
        return set(self._call("GET", "/_fake/live-keys"))

    def minted_keys(self) -> list[str]:
        return [k["value"] for k in self.state()["minted_keys"]]

    def enqueue(self, *faults: Fault) -> None:
        self._call("POST", "/_fake/enqueue", [f.to_json() for f in faults])

    def link_upstream(self, url: str) -> None:
        self._call("POST", "/_fake/link-upstream", {"url": url})

    def clear(self) -> None:
        self._call("POST", "/_fake/clear", {})


@contextlib.contextmanager
def spawn(
    admin_key: str = "sk-admin-fake",
    projects: tuple[str, ...] = ("proj_1",),
    upstream_url: str | None = None,
) -> Iterator[AdminControl]:
    """Run the fake as a separate process (stopped on exit); yields its control client."""
    argv = [sys.executable, "-m", "tests.fakes.openai_admin", "--admin-key", admin_key]
    for project in projects:
        argv += ["--project", project]
    if upstream_url is not None:
        argv += ["--upstream-url", upstream_url]
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the fake did not start: {line!r}")
        yield AdminControl(line.split()[-1])
    finally:
        process.terminate()
        process.wait(10)


async def _serve(args: argparse.Namespace) -> None:
    admin = FakeOpenAIAdmin(
        args.host, args.port, admin_key=args.admin_key, projects=args.project or ["proj_1"]
    )
    admin.upstream_urls.extend(args.upstream_url or [])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with admin:
        await admin._publish_remote()
        print(f"listening on {admin.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.openai_admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--admin-key", default="sk-admin-fake")
    parser.add_argument("--project", action="append", help="a project id (repeat)")
    parser.add_argument(
        "--upstream-url",
        action="append",
        help="a standalone fake upstream to keep told the live keys (repeat)",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
