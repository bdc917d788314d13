"""Metrics (prefix `agent_gateway_`), JSON log lines and optional OTLP tracing.

Metrics live in the gateway's own registry, served on the admin port.
OpenTelemetry is imported only when an OTLP endpoint is configured, so the
request path pays nothing when tracing is off. Keys never reach any of these.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agent_operator.sidecar import INFLIGHT_METRIC

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Every metric the gateway exports (see docs/gateway.md)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = "agent_gateway_"
        self.requests = Counter(
            p + "requests",
            "Requests answered, by door, route, status code and model (a priced name or other).",
            ["door", "route", "code", "model"],
            registry=r,
        )
        self.duration = Histogram(
            p + "request_duration_seconds",
            "Time to answer a request (to the last byte).",
            ["door", "route"],
            buckets=_BUCKETS,
            registry=r,
        )
        # unlabelled on purpose: the HPA's Pods metric reads it as is, and
        # counting the agent's own LLM calls too would double every request
        self.inflight = Gauge(
            INFLIGHT_METRIC,
            "Inbound requests in progress (the autoscaling signal).",
            registry=r,
        )
        self.outbound_inflight = Gauge(
            p + "outbound_inflight_requests",
            "Outbound (agent -> provider) requests in progress.",
            registry=r,
        )
        self.retries = Counter(
            p + "upstream_retries", "Upstream attempts retried, by reason.", ["reason"], registry=r
        )
        self.breaker_state = Gauge(
            p + "circuit_breaker_state",
            "Upstream circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["upstream"],
            registry=r,
        )
        self.breaker_rejections = Counter(
            p + "circuit_breaker_rejections",
            "Requests answered 503 because the breaker was open.",
            ["upstream"],
            registry=r,
        )
        self.tokens = Counter(
            p + "tokens",
            "Tokens by model and direction (input/output).",
            ["model", "direction"],
            registry=r,
        )
        self.cost = Counter(
            p + "cost_usd", "Cost charged to the budget, USD, by model.", ["model"], registry=r
        )
        self.budget_rejections = Counter(
            p + "budget_rejections",
            "Requests refused with 429 because a budget limit was used up.",
            ["period"],
            registry=r,
        )
        self.budget_downgrades = Counter(
            p + "budget_downgrades",
            "Requests whose model was rewritten because a limit was used up.",
            ["period"],
            registry=r,
        )
        self.budget_alerts = Counter(
            p + "budget_alerts",
            "Budget alert thresholds crossed (once per period and threshold).",
            ["period", "threshold"],
            registry=r,
        )
        self.budget_unavailable = Counter(
            p + "budget_unavailable",
            "Billed requests refused with 503: the spend store could not tell the spend.",
            registry=r,
        )
        self.ledger_writes = Counter(
            p + "ledger_writes",
            "Writes of this pod's spend records to the shared ledger, by result.",
            ["result"],
            registry=r,
        )
        self.ledger_sync_age = Gauge(
            p + "ledger_sync_age_seconds",
            "Seconds since the shared ledger last answered (watch alive, list or write).",
            registry=r,
        )
        self.budget_spent = Gauge(
            p + "budget_spent_usd",
            "Spend in the current period by every replica as this pod knows it, USD.",
            ["period"],
            registry=r,
        )
        self.budget_limit = Gauge(
            p + "budget_limit_usd", "Configured limit for the period, USD.", ["period"], registry=r
        )
        # unlabelled: an unpriced model has no bounded name (the log line names it)
        self.unknown_price = Counter(
            p + "unknown_model_price",
            "Requests charged at unknownModelPrice (no price for the model).",
            registry=r,
        )
        self.usage_estimated = Counter(
            p + "usage_estimated",
            "Requests charged from estimated tokens (usage never came).",
            ["model"],
            registry=r,
        )
        self.endpoint_refusals = Counter(
            p + "endpoint_refusals",
            "Outbound calls refused with 403: costly endpoints the gateway cannot meter.",
            ["endpoint"],
            registry=r,
        )
        self.auth_failures = Counter(
            p + "auth_failures", "Inbound requests refused with 401.", ["reason"], registry=r
        )
        self.guard = Counter(
            p + "prompt_guard_detections",
            "Requests flagged by the prompt guard: inbound bodies, outbound tool results.",
            ["door", "mode", "rule"],
            registry=r,
        )
        self.reloads = Counter(
            p + "config_reloads",
            "Mounted files reloaded, by volume and result.",
            ["volume", "result"],
            registry=r,
        )


class JsonLog:
    """One JSON object per line on stdout.

    Inside the event loop, lines are flushed once per loop iteration rather
    than once per line: as live as `kubectl logs` needs, one write syscall
    for a burst of requests.
    """

    def __init__(self, stream: TextIO | None = None, **static: str) -> None:
        self._stream = stream or sys.stdout
        self._static = static
        self._dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode
        self._flush_pending = False

    def emit(self, level: str, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "level": level, "event": event, **self._static}
        record.update(fields)
        self._stream.write(self._dumps(record) + "\n")
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._stream.flush()
            return
        self._flush_pending = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self._stream.flush()


# What may carry key material in a library's message: quoted raw input (aiohttp
# quotes the offending header line as b'...'), credentials after a scheme or a
# header name, and long token-like runs.
_SECRETS = re.compile(
    r"b'(?:[^'\\]|\\.)*'"  # bytes reprs: b'...'
    r'|b"(?:[^"\\]|\\.)*"'
    r"|'(?:[^'\\]|\\.){12,}'"  # long quoted strings
    r'|"(?:[^"\\]|\\.){12,}"'
    r"|(?i:bearer|basic)\s+\S+"
    r"|(?i:authorization|x-api-key|api-key|cookie|proxy-authorization)\s*[:=]\s*(?:(?i:bearer|basic)\s+)?\S+"
    r"|[A-Za-z0-9_\-+/=.]{20,}"
)
_MESSAGE_MAX = 300


def scrub(text: str) -> str:
    """`text` with anything that could be key material replaced by `<redacted>`."""
    return _SECRETS.sub("<redacted>", text)[:_MESSAGE_MAX]


class LibraryLogHandler(logging.Handler):
    """Routes warnings of the libraries (aiohttp, opentelemetry...) into the JSON stream.

    Scrubbed: aiohttp's parser errors quote the raw header line they refused,
    which may be an Authorization header. Exceptions are named by type (and
    HTTP status), never by their message.
    """

    def __init__(self, log: JsonLog) -> None:
        super().__init__(logging.WARNING)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = scrub(record.getMessage())
        except Exception:  # a message that cannot even be formatted is not logged raw
            message = "<unformattable>"
        fields: dict[str, Any] = {"logger": record.name, "message": message}
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            fields["error"] = type(exc).__name__
            status = getattr(exc, "code", None) or getattr(exc, "status", None)
            if isinstance(status, int):
                fields["error_status"] = status
        self._log.emit(record.levelname.lower(), "library_log", **fields)


class Tracing:
    """OTLP/HTTP span export with the GenAI semantic-convention attributes."""

    def __init__(self, endpoint: str, service_name: str, attributes: dict[str, str]) -> None:
        # imported here so a gateway without --otlp-endpoint never loads OpenTelemetry
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        traces_url = endpoint.rstrip("/")
        if not traces_url.endswith("/v1/traces"):
            traces_url += "/v1/traces"
        resource = Resource.create({"service.name": service_name, **attributes})
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url)))
        self._tracer = self._provider.get_tracer("agent_operator.gateway")

    def start(self, name: str, attributes: dict[str, Any]) -> Any:
        from opentelemetry.trace import SpanKind

        return self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)

    def shutdown(self) -> None:
        self._provider.shutdown()
