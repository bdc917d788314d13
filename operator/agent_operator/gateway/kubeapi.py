"""The gateway's only door to the Kubernetes API: its SpendRecords and its AgentDeployment.

Why aiohttp and not a Kubernetes client library: the gateway needs six REST
calls on one resource (get, create, replace, list, watch, and one get of its
AgentDeployment), already runs on aiohttp, and a generated client would
add tens of MB to every pod. The request path never calls this module: the
ledger's background tasks do (gateway/ledger.py).

Credentials are the in-cluster ones, from the gateway container only: the
projected service-account token (re-read every minute: the kubelet rotates
it), `ca.crt` beside it, the API server from KUBERNETES_SERVICE_HOST/PORT.
Nothing here logs a token or echoes a response body: errors carry the
status and the API's reason only. Redirects are not followed; answers are
read up to a bound.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from agent_operator.api import GROUP, PLURAL, VERSION
from agent_operator.ledger import RECORD_PLURAL

TOKEN_FILE: Final = "token"
CA_FILE: Final = "ca.crt"
_TOKEN_TTL_SECONDS: Final = 60.0
_MAX_ANSWER_BYTES: Final = 16 * 1024 * 1024  # a list of one agent's records is far smaller
_MAX_EVENT_BYTES: Final = 1024 * 1024  # one watch event (one record)
_TIMEOUT: Final = aiohttp.ClientTimeout(total=10, connect=3)


class KubeError(Exception):
    """The API server refused or could not be reached: status 0 for a connection error."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}" if status else reason)
        self.status = status
        self.reason = reason


class Gone(KubeError):
    """410: the watch's resourceVersion is too old; list again."""


def server_from_environment() -> str:
    """https://HOST:PORT of the API server, as the kubelet tells every container."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeError(0, "KUBERNETES_SERVICE_HOST is not set: not running in a pod")
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}:{port}"


class KubeAPI:
    """SpendRecords of one namespace, and one AgentDeployment, over one pooled session."""

    def __init__(self, server: str, service_account_dir: Path, namespace: str) -> None:
        self.server = server.rstrip("/")
        self.namespace = namespace
        self._dir = service_account_dir
        self._token = ""
        self._token_read_at = float("-inf")
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}"
        self.records_path = f"{base}/{RECORD_PLURAL}"
        self.agents_path = f"{base}/{PLURAL}"

    def _headers(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._token_read_at > _TOKEN_TTL_SECONDS:
            try:
                self._token = (self._dir / TOKEN_FILE).read_text().strip()
            except OSError as exc:
                raise KubeError(
                    0, f"service-account token unreadable ({type(exc).__name__})"
                ) from None
            self._token_read_at = now
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    def _connection(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self.server.startswith("https://"):
                self._ssl = ssl.create_default_context(cafile=str(self._dir / CA_FILE))
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False),
                cookie_jar=aiohttp.DummyCookieJar(),
                # a watch line longer than twice this is refused (ValueError): bounds memory
                read_bufsize=_MAX_EVENT_BYTES // 2,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """One request; the decoded answer, None for 404, KubeError otherwise."""
        try:
            async with self._connection().request(
                method,
                self.server + path,
                json=body,
                params=params,
                headers=self._headers(),
                allow_redirects=False,
                timeout=_TIMEOUT,
            ) as answer:
                raw = await _read_bounded(answer.content, _MAX_ANSWER_BYTES + 1)
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            raise KubeError(0, type(exc).__name__) from None
        if status == 404:
            return None
        decoded = _decode(raw) if len(raw) <= _MAX_ANSWER_BYTES else None
        if status >= 300 or decoded is None:
            reason = str((decoded or {}).get("reason") or "")[:64] or "Unreadable"
            raise (Gone if status == 410 else KubeError)(status, reason)
        return decoded

    async def get_record(self, name: str) -> dict[str, Any] | None:
        return await self._call("GET", f"{self.records_path}/{quote(name, safe='')}")

    async def create_record(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create; KubeError 409 when it exists already."""
        created = await self._call("POST", self.records_path, body)
        if created is None:
            raise KubeError(404, "NotFound")  # the namespace or the CRD is missing
        return created

    async def replace_record(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Replace, conditional on body.metadata.resourceVersion; None when gone."""
        name = quote(body["metadata"]["name"], safe="")
        return await self._call("PUT", f"{self.records_path}/{name}", body)

    async def list_records(self, selector: str) -> tuple[list[dict[str, Any]], str]:
        """Records matching the label selector, and the list's resourceVersion."""
        answer = await self._call("GET", self.records_path, params={"labelSelector": selector})
        if answer is None:
            raise KubeError(404, "NotFound")
        items = answer.get("items")
        version = (answer.get("metadata") or {}).get("resourceVersion")
        if not isinstance(items, list) or not isinstance(version, str):
            raise KubeError(200, "Unreadable")
        return [i for i in items if isinstance(i, dict)], version

    async def watch_records(
        self, selector: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) events after `resource_version`, bookmarks included.

        Ends when the server closes the watch (after `timeout_seconds`); raises
        Gone when the version is too old, KubeError on other trouble.
        """
        params = {
            "watch": "true",
            "labelSelector": selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = aiohttp.ClientTimeout(total=None, connect=3, sock_read=timeout_seconds + 15)
        try:
            async with self._connection().get(
                self.server + self.records_path,
                params=params,
                headers=self._headers(),
                allow_redirects=False,
                timeout=timeout,
            ) as answer:
                if answer.status != 200:
                    raise (Gone if answer.status == 410 else KubeError)(answer.status, "Refused")
                while line := await answer.content.readline():
                    event = _decode(line)
                    if event is None:
                        raise KubeError(200, "Unreadable")
                    kind, obj = event.get("type"), event.get("object")
                    if kind == "ERROR":
                        code = int((obj or {}).get("code") or 0)
                        raise (Gone if code == 410 else KubeError)(code, "WatchError")
                    if isinstance(kind, str) and isinstance(obj, dict):
                        yield kind, obj
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError, ValueError) as exc:
            raise KubeError(0, type(exc).__name__) from None

    async def agent_uid(self, name: str) -> str | None:
        """uid of the AgentDeployment `name` (owner of the records); None when absent."""
        body = await self._call("GET", f"{self.agents_path}/{quote(name, safe='')}")
        uid = ((body or {}).get("metadata") or {}).get("uid")
        return uid if isinstance(uid, str) else None


async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, or its first `limit` bytes when it is longer (then refused)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _decode(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
