"""The inbound door: caller -> gateway -> agent on localhost.

authenticate -> guard -> forward (streamed both ways) -> record. When client
auth is on, the caller's key is checked and not passed on to the agent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp
from aiohttp import web
from yarl import URL

from agent_operator.gateway.bodies import (
    BODY_ERRORS,
    BodyReader,
    body_fault,
    body_refusal,
    streamed_chunks,
)
from agent_operator.gateway.config import Settings
from agent_operator.gateway.guarding import SCAN_INLINE_MAX, Guard
from agent_operator.gateway.screening import (
    Unreadable,
    Unscannable,
    query_texts,
    screened_payload,
)
from agent_operator.gateway.state import GatewayState
from agent_operator.gateway.telemetry import JsonLog, Metrics
from agent_operator.gateway.wire import (
    DECODED_BY_SERVER,
    HOP_BY_HOP,
    REQUEST_ID,
    copy_headers,
    drop_set,
    json_error,
    new_request_id,
)

_CLIENT_CREDENTIALS = ("authorization", "x-api-key")
_RESPONSE_DROP = drop_set(HOP_BY_HOP)
_ROUTES_MAX = 64  # bounds the route label's cardinality


class Inbound:
    """aiohttp low-level handler for the inbound listener (the Service's port)."""

    def __init__(
        self,
        settings: Settings,
        state: GatewayState,
        guard: Guard,
        metrics: Metrics,
        log: JsonLog,
        session: aiohttp.ClientSession,
    ) -> None:
        self.state = state
        self.guard = guard
        self.metrics = metrics
        self.log = log
        self.session = session
        self.auth_on = settings.client_keys_dir is not None
        self.agent = URL(settings.agent_url)
        drop = [*HOP_BY_HOP, *(_CLIENT_CREDENTIALS if self.auth_on else ())]
        self.request_drop = drop_set(drop)
        self.timeout = aiohttp.ClientTimeout(total=None, connect=5.0)
        self.inflight = metrics.inflight
        self.bodies = BodyReader(settings.max_request_body_bytes, settings.body_timeout_seconds)
        self._routes: set[str] = set()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request.headers.get(REQUEST_ID) or new_request_id()
        fields: dict[str, object] = {}
        status = 500
        self.inflight.inc()
        try:
            refused = self._authenticate(request, fields)
            body: bytes | None = None
            if refused is None:
                try:
                    body, refused = await self._guard(request, fields)
                except BODY_ERRORS as exc:
                    fields["error"] = type(exc).__name__
                    refused = body_refusal(exc)
            if refused is not None:
                refused.headers[REQUEST_ID] = request_id
                status = refused.status
                return refused
            response = await self._forward(request, request_id, body, fields)
            status = response.status
            return response
        finally:
            self.inflight.dec()
            self._record(request, request_id, status, started, fields)

    # ---------------------------------------------------------------- hops

    def _authenticate(
        self, request: web.BaseRequest, fields: dict[str, object]
    ) -> web.Response | None:
        """401 unless a current (or unexpired previous) client key is presented."""
        if not self.auth_on:
            return None
        keys = self.state.snapshot.client_keys  # the only reloadable thing inbound reads
        if keys is None:
            return json_error(503, "client keys not loaded yet", "not_ready")
        presented = presented_key(request.headers)
        if presented is not None and keys.verify(presented, time.time()):
            return None
        reason = "missing" if presented is None else "invalid"
        fields["auth"] = reason
        self.metrics.auth_failures.labels(reason).inc()
        return json_error(
            401,
            "missing API key" if presented is None else "invalid API key",
            "unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="agent"'},
        )

    async def _guard(
        self, request: web.BaseRequest, fields: dict[str, object]
    ) -> tuple[bytes | None, web.Response | None]:
        """Scan the query and the body; block answers 400 naming the rule, flag only records.

        Fails closed in block mode: what the guard cannot read is refused,
        never forwarded unscanned.
        """
        if not self.guard.active:
            return None, None
        texts: list[object] = []
        try:
            texts.extend(query_texts(request.rel_url.raw_query_string))
        except Unreadable as exc:
            return None, self._unreadable(400, "unreadable_query", str(exc), fields)
        if not request.body_exists:
            return None, self._verdict(texts, fields) if texts else None
        encoding = request.headers.get("Content-Encoding", "").lower()
        if encoding not in ("", "identity") and encoding not in DECODED_BY_SERVER:
            # still encoded: the guard cannot read it, the agent might
            return None, self._unreadable(
                415,
                "unsupported_content_encoding",
                "request body in a Content-Encoding the prompt guard cannot read",
                fields,
            )
        async with self.bodies.read(request) as body:
            ctype = request.content_type if "Content-Type" in request.headers else None
            try:
                if len(body) > SCAN_INLINE_MAX:
                    # parsed and scanned in a thread, under the body's large slot
                    verdict = await asyncio.to_thread(self._screen, body, ctype, texts, fields)
                else:
                    verdict = self._screen(body, ctype, texts, fields)
            except Unscannable as exc:
                verdict = self._unreadable(415, "unsupported_media_type", str(exc), fields)
            except Unreadable as exc:
                verdict = self._unreadable(400, "unreadable_body", str(exc), fields)
        return body, verdict

    def _screen(
        self, body: bytes, ctype: str | None, texts: list[object], fields: dict[str, object]
    ) -> web.Response | None:
        texts.append(screened_payload(body, ctype))
        return self._verdict(texts, fields)

    def _verdict(self, texts: list[object], fields: dict[str, object]) -> web.Response | None:
        result = self.guard.scan(texts)
        if not result.flagged:
            return None
        rule = result.rule or "unknown"
        self.metrics.guard.labels("inbound", self.guard.mode, rule).inc()
        fields["guard_rule"] = rule
        fields["guard_score"] = round(result.score, 3)
        if self.guard.mode != "block":
            fields["guard_action"] = "flagged"
            return None
        fields["guard_action"] = "blocked"
        return json_error(
            400,
            f"request blocked by the prompt guard (rule {rule})",
            "prompt_guard_blocked",
            rule=rule,
        )

    def _unreadable(
        self, status: int, kind: str, message: str, fields: dict[str, object]
    ) -> web.Response | None:
        """Block: refuse what the guard cannot read. Flag: forward it, counted."""
        self.metrics.guard.labels("inbound", self.guard.mode, "unreadable").inc()
        fields["guard_rule"] = "unreadable"
        fields["guard_reason"] = message
        if self.guard.mode != "block":
            fields["guard_action"] = "flagged"
            return None
        fields["guard_action"] = "blocked"
        return json_error(status, f"{message}: refused by the prompt guard", kind)

    async def _forward(
        self,
        request: web.BaseRequest,
        request_id: str,
        body: bytes | None,
        fields: dict[str, object],
    ) -> web.StreamResponse:
        """Proxy to the agent, streaming the request and the response."""
        headers = copy_headers(request.headers, self.request_drop)
        if request.headers.get("Content-Encoding", "").lower() in DECODED_BY_SERVER:
            # the server already decoded the body; labelling it encoded would corrupt it
            del headers["Content-Encoding"]
        headers[REQUEST_ID] = request_id
        peer = request.remote or ""
        forwarded = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
        if request.host:
            headers["X-Forwarded-Host"] = request.host
        data: object = body
        if body is None and request.body_exists:
            # not screened (guard off, or flagged as unreadable): streamed, never
            # buffered, and cut at the same limit (decoded) as a screened one
            data = streamed_chunks(request.content, self.bodies.timeout, self.bodies.limit)
        url = URL.build(
            scheme=self.agent.scheme,
            authority=self.agent.raw_authority,
            path=request.rel_url.raw_path,
            query_string=request.rel_url.raw_query_string,  # byte for byte as sent
            encoded=True,
        )
        try:
            upstream = await self.session.request(
                request.method,
                url,
                data=data,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except BODY_ERRORS as exc:
            fields["error"] = type(exc).__name__
            return body_refusal(exc)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            fault = body_fault(exc)
            if fault is not None:  # the caller's body, not the agent, failed
                fields["error"] = type(fault).__name__
                return body_refusal(fault)
            fields["error"] = type(exc).__name__
            return json_error(
                502, "agent unreachable", "agent_unreachable", headers={REQUEST_ID: request_id}
            )
        try:
            out_headers = copy_headers(upstream.headers, _RESPONSE_DROP)
            out_headers[REQUEST_ID] = request_id
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            if upstream.content_length is not None and "chunked" not in upstream.headers.get(
                "Transfer-Encoding", ""
            ):
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            fields["stream_error"] = type(exc).__name__
            upstream.close()
            if request.transport is not None:
                request.transport.close()
            return response
        except BaseException:
            upstream.close()  # cancelled (e.g. at shutdown): never leak the agent connection
            raise
        upstream.release()
        return response

    def _record(
        self,
        request: web.BaseRequest,
        request_id: str,
        status: int,
        started: float,
        fields: dict[str, object],
    ) -> None:
        duration = time.perf_counter() - started
        route = self._route(request.path)
        self.metrics.requests.labels("inbound", route, str(status), "-").inc()
        self.metrics.duration.labels("inbound", route).observe(duration)
        self.log.emit(
            "info",
            "request",
            request_id=request_id,
            door="inbound",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round(duration * 1000, 3),
            **fields,
        )

    def _route(self, path: str) -> str:
        """First two path segments (`/v1/chat/x` -> `/v1/chat`), bounded in cardinality."""
        route = "/" + "/".join(path.lstrip("/").split("/", 2)[:2])
        if route in self._routes:
            return route
        if len(self._routes) < _ROUTES_MAX:
            self._routes.add(route)
            return route
        return "other"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The client key from `Authorization: Bearer` or `X-API-Key`, if any."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    key = headers.get("X-API-Key", "").strip()
    return key or None
