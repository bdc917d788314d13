"""The outbound door: agent -> gateway -> LLM provider.

The request path reads top to bottom: admit (budget loaded, path normalised
and allowed, body read) -> budget check -> forward with retries -> respond
(streamed) -> account. Token-billed endpoints (chat/completions, embeddings,
responses, messages) are checked and charged; endpoints that cost money but
cannot be metered are refused unless allowed (gateway/endpoints.py); other
paths pass through, still authenticated upstream. The key goes only to the
configured origin: the path is rebuilt on it and redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

import aiohttp
from aiohttp import web
from tenacity import RetryCallState
from yarl import URL

from agent_operator.gateway.accounting import Accountant
from agent_operator.gateway.bodies import BODY_ERRORS, BodyReader, body_refusal
from agent_operator.gateway.budget import reservation_usd
from agent_operator.gateway.call import Call
from agent_operator.gateway.config import Settings
from agent_operator.gateway.dialects import dialect_for
from agent_operator.gateway.endpoints import (
    BadPath,
    encode_path,
    normalise_path,
    route,
    upstream_path,
)
from agent_operator.gateway.guarding import SCAN_INLINE_MAX, Guard
from agent_operator.gateway.resilience import (
    BREAKER_STATUSES,
    RETRY_STATUSES,
    BreakerOpen,
    CircuitBreaker,
    RetryableStatus,
    RetryPolicy,
    UpstreamUnreachable,
    parse_retry_after,
)
from agent_operator.gateway.spend import Hold, StoreUnavailable
from agent_operator.gateway.state import GatewayState
from agent_operator.gateway.telemetry import JsonLog, Metrics
from agent_operator.gateway.usage import SseTap, UsageMeter, content_chars
from agent_operator.gateway.wire import (
    AGENT_CREDENTIALS,
    DECODED_BY_SERVER,
    HOP_BY_HOP,
    REQUEST_ID,
    copy_headers,
    drop_set,
    new_request_id,
)

_USAGE_OPTION_KINDS = frozenset({"chat", "completions"})  # where stream_options exists
# model calls that can carry tool results (embeddings and legacy completions cannot)
_SCREENED_KINDS = frozenset({"chat", "responses", "messages"})
_AZURE_DEPLOYMENT = re.compile(r"/deployments/([^/]+)/")
# identity: usage must be readable, and loopback/SSE gain nothing from gzip
_REQUEST_DROP = drop_set(HOP_BY_HOP, AGENT_CREDENTIALS, ["accept-encoding"])
_RESPONSE_DROP = drop_set(HOP_BY_HOP, ["content-encoding"])
_dumps = json.JSONEncoder(separators=(",", ":")).encode
# the agent's calls may carry images as base64: larger than inbound bodies
OUTBOUND_BODY_LIMIT = 32 * 1024 * 1024


class Outbound:
    """aiohttp low-level handler for the outbound listener."""

    def __init__(
        self,
        settings: Settings,
        state: GatewayState,
        accountant: Accountant,
        metrics: Metrics,
        log: JsonLog,
        session: aiohttp.ClientSession,
        guard: Guard,
    ) -> None:
        self.settings = settings
        self.state = state
        self.accountant = accountant
        self.metrics = metrics
        self.log = log
        self.session = session
        self.dialect = dialect_for(settings.provider)
        self.guard = guard
        self.screened_roles = settings.prompt_guard_outbound_roles
        self.base = URL(settings.upstream_url)
        self.origin = self.base.origin()
        self.upstream_label = self.origin.host or "upstream"
        self.policy = RetryPolicy(
            settings.retry_attempts,
            settings.retry_backoff_min_seconds,
            settings.retry_backoff_max_seconds,
            settings.timeout_seconds,
        )
        gauge = metrics.breaker_state.labels(self.upstream_label)
        gauge.set(0)
        self.breaker = CircuitBreaker(
            settings.breaker_failure_threshold,
            settings.breaker_open_seconds,
            on_change=lambda s: gauge.set({"closed": 0, "half_open": 1, "open": 2}[s]),
        )
        # connect bounded separately; sock_read bounds silence while streaming
        self.timeout = aiohttp.ClientTimeout(
            total=None,
            connect=min(10.0, settings.timeout_seconds),
            sock_read=settings.timeout_seconds,
        )
        self.inflight = metrics.outbound_inflight
        self.allowed = settings.allow_unmetered
        self.bodies = BodyReader(OUTBOUND_BODY_LIMIT, settings.body_timeout_seconds)
        # only a reserving store needs each call's maximum cost up front
        self.reserving = settings.spend_store == "redis"

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        call = Call(
            request_id=request.headers.get(REQUEST_ID) or new_request_id(),
            method=request.method,
            path=request.path,
            kind=None,
            body=b"",
            started=time.perf_counter(),
            snapshot=self.state.snapshot,
        )
        status = 500
        self.inflight.inc()
        try:
            refused = await self._admit(request, call)
            if refused is None:
                refused = await self._screen(call)
            if refused is None:
                self.accountant.begin(call)
                refused = await self._check_budget(call)
            if refused is not None:
                status = refused.status
                return refused
            response = await self._forward(request, call)
            status = response.status
            return response
        finally:
            self.inflight.dec()
            self.accountant.release(call)  # a call that cost nothing frees its reservation
            self.accountant.finish(call, status)

    # ---------------------------------------------------------------- hops

    async def _admit(self, request: web.BaseRequest, call: Call) -> web.Response | None:
        """Budget loaded, path normalised and allowed, body read and parsed: or a refusal."""
        if not call.snapshot.budget_loaded:
            # fail closed: a call that cannot be checked against the budget is not made
            return self._refuse(
                call, 503, "budget not loaded: calls are refused until it is", "budget_unavailable"
            )
        try:
            call.path = normalise_path(request.rel_url.raw_path)
        except BadPath as exc:
            return self._refuse(call, 400, f"invalid path: {exc}", "invalid_request_error")
        decided = route(call.method, call.path, self.settings.provider, self.allowed)
        if decided.refused is not None:
            self.metrics.endpoint_refusals.labels(decided.refused).inc()
            call.fields["refused_endpoint"] = decided.refused
            return self._refuse(
                call,
                403,
                f"endpoint {decided.refused} ({call.method} {call.path}) costs money the "
                "gateway cannot meter; allow it in spec.gateway.allowUnmeteredEndpoints",
                "endpoint_not_allowed",
                endpoint=decided.refused,
            )
        call.kind = decided.kind
        try:
            async with self.bodies.read(request) as body:
                call.body = body
        except BODY_ERRORS as exc:
            return body_refusal(
                exc,
                anthropic=self.dialect.anthropic_errors,
                headers={REQUEST_ID: call.request_id},
            )
        return self._parse(call)

    def _refuse(
        self, call: Call, status: int, message: str, error_type: str, **extra: object
    ) -> web.Response:
        return self.dialect.error(
            status, message, error_type, headers={REQUEST_ID: call.request_id}, **extra
        )

    def _parse(self, call: Call) -> web.Response | None:
        """Decode a billed request's JSON once; ask for usage in streams.

        Fails closed: a billed call whose body cannot be read is refused, never
        forwarded unmetered (the provider's parser may be more lenient).
        """
        if call.kind is None:
            return None
        try:
            payload = json.loads(call.body)
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else "invalid JSON"
            return self._refuse(
                call, 400, f"request body of a billed endpoint: {reason}", "invalid_request_error"
            )
        if not isinstance(payload, dict):
            return self._refuse(
                call,
                400,
                "request body of a billed endpoint must be a JSON object",
                "invalid_request_error",
            )
        call.payload = payload
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            match = _AZURE_DEPLOYMENT.search(call.path)
            model = match.group(1) if match else ""
        call.model = model
        call.stream = payload.get("stream") is True
        if call.stream and call.kind in _USAGE_OPTION_KINDS:
            options = payload.get("stream_options")
            options = options if isinstance(options, dict) else {}
            if options.get("include_usage") is not True:
                payload["stream_options"] = {**options, "include_usage": True}
                call.strip_usage_chunk = True
                call.body = _dumps(payload).encode()
        return None

    async def _screen(self, call: Call) -> web.Response | None:
        """Screen the tool results in a model call (indirect injection, fetched
        text the agent passes on). Block answers 400 in the provider's error
        shape naming the rule, and the provider never sees the call; flag
        forwards it, counted and logged."""
        if not self.guard.active or call.payload is None or call.kind not in _SCREENED_KINDS:
            return None
        parts = self.dialect.screened_parts(call.payload, self.screened_roles)
        if not parts:
            return None
        if len(call.body) > SCAN_INLINE_MAX:
            result = await asyncio.to_thread(self.guard.scan, parts)
        else:
            result = self.guard.scan(parts)
        if not result.flagged:
            return None
        rule = result.rule or "unknown"
        self.metrics.guard.labels("outbound", self.guard.mode, rule).inc()
        call.fields["guard_rule"] = rule
        call.fields["guard_score"] = round(result.score, 3)
        if self.guard.mode != "block":
            call.fields["guard_action"] = "flagged"
            return None
        call.fields["guard_action"] = "blocked"
        return self.dialect.error(
            400,
            f"tool result blocked by the prompt guard (rule {rule}): "
            "the call was not sent to the provider",
            "prompt_guard_blocked",
            # the same body would be blocked again: SDKs must not retry it
            headers={"x-should-retry": "false", REQUEST_ID: call.request_id},
            rule=rule,
        )

    async def _check_budget(self, call: Call) -> web.Response | None:
        """Admitted with a hold, or 429 naming the limit (reject), or a rewritten
        model (downgrade); 503 when the spend store cannot tell (fail closed)."""
        if call.kind is None:
            return None
        config = call.snapshot.budget
        budget = self.state.budget
        now = time.time()
        reserve = (
            reservation_usd(config, call.model, len(call.body), call.payload)
            if self.reserving and config.limits
            else 0.0
        )
        try:
            verdict = await budget.admit(config, now, reserve)
        except StoreUnavailable as exc:
            self.metrics.budget_unavailable.inc()
            call.fields["budget_error"] = str(exc)
            return self._refuse(
                call,
                503,
                "spend store unavailable: billed calls are refused until it answers",
                "budget_unavailable",
            )
        if isinstance(verdict, Hold):
            call.hold = verdict
            return None
        exhausted = verdict
        limit = exhausted.limit
        if config.on_exhausted == "downgrade" and config.downgrade_model and call.payload:
            self.metrics.budget_downgrades.labels(limit.period).inc()
            call.downgraded_from = call.model
            call.model = config.downgrade_model
            call.payload["model"] = config.downgrade_model
            call.body = _dumps(call.payload).encode()
            # past the limit on purpose: still charged, nothing reserved
            call.hold = Hold(tuple(budget.keys(config, now)))
            return None
        self.metrics.budget_rejections.labels(limit.period).inc()
        call.fields["budget_limit"] = limit.period
        message = (
            f"budget exhausted: the {limit.period} limit of {limit.max_usd:.6g} USD "
            f"is used up ({exhausted.spent_usd:.6g} USD spent in {exhausted.period_key})"
        )
        return self.dialect.error(
            429,
            message,
            "budget_exhausted",
            # the OpenAI and Anthropic SDKs honour this and do not retry
            headers={"x-should-retry": "false", REQUEST_ID: call.request_id},
            limit={"period": limit.period, "maxUSD": limit.max_usd},
            spentUSD=round(exhausted.spent_usd, 6),
        )

    async def _forward(self, request: web.BaseRequest, call: Call) -> web.StreamResponse:
        """Send with retries, then stream the answer back to the agent."""
        key = call.snapshot.upstream_key
        if key is None:
            return self.dialect.error(503, "upstream key not loaded yet", "not_ready")
        headers = copy_headers(request.headers, _REQUEST_DROP)
        if request.headers.get("Content-Encoding", "").lower() in DECODED_BY_SERVER:
            del headers["Content-Encoding"]  # call.body was decoded by the server
        name, value = self.dialect.authorization(key.value)
        headers[name] = value
        headers["Accept-Encoding"] = "identity"
        url = URL.build(
            scheme=self.base.scheme,
            authority=self.base.raw_authority,
            # the path that was metered, escaped again; the query byte for byte as sent
            path=upstream_path(self.base, encode_path(call.path)),
            query_string=request.rel_url.raw_query_string,
            encoded=True,
        )
        try:
            upstream, body = await self._send(call, url, headers)
        except RetryableStatus as final:
            # retries used up: hand the provider's own answer back
            hdrs = copy_headers(final.headers, _RESPONSE_DROP)
            hdrs[REQUEST_ID] = call.request_id
            return web.Response(status=final.status, body=final.body, headers=hdrs)
        except BreakerOpen:
            self.metrics.breaker_rejections.labels(self.upstream_label).inc()
            wait = str(max(1, int(self.settings.breaker_open_seconds)))
            return self.dialect.error(
                503,
                "upstream circuit breaker is open",
                "circuit_open",
                headers={"Retry-After": wait, REQUEST_ID: call.request_id},
            )
        except UpstreamUnreachable as exc:
            status = 504 if exc.reason == "timeout" else 502
            call.fields["error"] = exc.reason
            return self.dialect.error(
                status,
                f"upstream unreachable ({exc.reason})",
                "upstream_unreachable",
                headers={REQUEST_ID: call.request_id},
            )
        meter = UsageMeter()
        if body is not None:  # buffered (non-stream billed) answer
            return self._respond_buffered(call, upstream, body, meter)
        return await self._respond_streamed(request, call, upstream, meter)

    async def _send(
        self, call: Call, url: URL, headers: Any
    ) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """First attempt directly (the common case pays no retry machinery), then
        tenacity for the rest: backoff with jitter, Retry-After, total deadline."""
        try:
            return await self._attempt(call, url, headers)
        except (RetryableStatus, UpstreamUnreachable) as exc:
            first = exc
        policy = self.policy
        elapsed = time.perf_counter() - call.started
        pause = policy.wait_for(first, 1)
        if policy.should_stop(1, elapsed, pause):
            raise first
        self._count_retry(call, first)
        await asyncio.sleep(pause)
        started = time.monotonic() - (time.perf_counter() - call.started)
        retrying = policy.retrying(
            started, done=1, before_sleep=lambda s: self._count_retry(call, _outcome(s))
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(call, url, headers)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _count_retry(self, call: Call, exc: BaseException | None) -> None:
        call.retries += 1
        if isinstance(exc, RetryableStatus):
            reason = str(exc.status)
        elif isinstance(exc, UpstreamUnreachable):
            reason = exc.reason
        else:
            reason = "error"
        self.metrics.retries.labels(reason).inc()

    async def _attempt(
        self, call: Call, url: URL, headers: Any
    ) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """One try. Non-stream billed answers are read here, so a cut body is retried."""
        if not self.breaker.allow():
            raise BreakerOpen()
        remaining = self.settings.timeout_seconds - (time.perf_counter() - call.started)
        upstream: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(max(0.001, remaining)):
                upstream = await self.session.request(
                    call.method,
                    url,
                    data=call.body or None,
                    headers=headers,
                    timeout=self.timeout,
                    # a redirect would carry the key elsewhere: the agent gets the 3xx as is
                    allow_redirects=False,
                )
                if upstream.status in RETRY_STATUSES:
                    body = await upstream.read()
                    upstream.release()
                    retry_after = parse_retry_after(
                        upstream.headers.get("Retry-After"), time.time()
                    )
                    self._breaker_verdict(upstream.status)
                    raise RetryableStatus(upstream.status, upstream.headers, body, retry_after)
                buffered = None
                if call.kind is not None and not _is_sse(upstream):
                    buffered = await upstream.read()
                    upstream.release()
        except TimeoutError as exc:
            self._close(upstream)
            self.breaker.record_failure()
            raise UpstreamUnreachable("timeout") from exc
        except (aiohttp.ClientError, OSError) as exc:
            self._close(upstream)
            self.breaker.record_failure()
            raise UpstreamUnreachable(type(exc).__name__) from exc
        except RetryableStatus:
            raise
        except BaseException:
            self._close(upstream)
            self.breaker.release()
            raise
        self._breaker_verdict(upstream.status)
        return upstream, buffered

    def _breaker_verdict(self, status: int) -> None:
        if status in BREAKER_STATUSES:
            self.breaker.record_failure()
        elif status == 429:
            self.breaker.record_neutral()
        else:
            self.breaker.record_success()

    @staticmethod
    def _close(upstream: aiohttp.ClientResponse | None) -> None:
        if upstream is not None:
            upstream.close()

    def _respond_buffered(
        self, call: Call, upstream: aiohttp.ClientResponse, body: bytes, meter: UsageMeter
    ) -> web.Response:
        if upstream.status < 300:
            with contextlib.suppress(ValueError):
                meter.feed(json.loads(body))
            # no usage in the answer: estimate output from its text, never charge it as free
            delivered = 0 if meter.found else content_chars(body)
            self.accountant.charge(call, meter, complete=True, delivered_chars=delivered)
        headers = copy_headers(upstream.headers, _RESPONSE_DROP)
        headers[REQUEST_ID] = call.request_id
        return web.Response(status=upstream.status, body=body, headers=headers)

    async def _respond_streamed(
        self,
        request: web.BaseRequest,
        call: Call,
        upstream: aiohttp.ClientResponse,
        meter: UsageMeter,
    ) -> web.StreamResponse:
        """Pass chunks through as they arrive; read usage from billed SSE streams."""
        tap = SseTap(meter, call.strip_usage_chunk) if call.kind is not None else None
        headers = copy_headers(upstream.headers, _RESPONSE_DROP)
        headers[REQUEST_ID] = call.request_id
        response = web.StreamResponse(status=upstream.status, headers=headers)
        complete = False
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                out = tap.feed(chunk) if tap is not None else chunk
                if out:
                    await response.write(out)
            if tap is not None and (rest := tap.flush()):
                await response.write(rest)
            complete = True
            await response.write_eof()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # upstream cut or client gone: no retry once bytes were sent
            call.fields["stream_error"] = type(exc).__name__
            if request.transport is not None:
                request.transport.close()  # the client must see a truncated stream
        finally:
            if complete:
                upstream.release()  # connection back to the pool
            else:
                upstream.close()  # half-read: the connection cannot be reused
            if tap is not None and upstream.status < 300:
                self.accountant.charge(call, meter, complete, tap.delivered_chars)
        return response


def _outcome(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


def _is_sse(upstream: aiohttp.ClientResponse) -> bool:
    return upstream.content_type == "text/event-stream"
