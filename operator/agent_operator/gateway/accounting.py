"""After the call: tokens -> USD -> budget, then metrics, the log line and the span."""

from __future__ import annotations

import time
from typing import Any

from yarl import URL

from agent_operator.gateway.call import Call
from agent_operator.gateway.config import Settings
from agent_operator.gateway.state import GatewayState
from agent_operator.gateway.telemetry import JsonLog, Metrics, Tracing
from agent_operator.gateway.usage import UsageMeter, estimate_tokens

# OpenTelemetry GenAI semantic conventions: provider names
GENAI_PROVIDER = {
    "openai": "openai",
    "openai-compatible": "openai",
    "azure-openai": "azure.ai.openai",
    "anthropic": "anthropic",
}
GENAI_OPERATION = {
    "chat": "chat",
    "messages": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}
_WARNED_MAX = 256


class Accountant:
    """Charges billed calls and records every call once."""

    def __init__(
        self,
        settings: Settings,
        state: GatewayState,
        metrics: Metrics,
        log: JsonLog,
        tracing: Tracing | None,
    ) -> None:
        self.state = state
        self.metrics = metrics
        self.log = log
        self.tracing = tracing
        self.provider = GENAI_PROVIDER[settings.provider]
        # semconv: a host name, and never the whole URL (it may carry userinfo)
        self.server = URL(settings.upstream_url).host or ""
        self._warned_unknown: set[str] = set()

    def begin(self, call: Call) -> None:
        """Open the span (only when tracing is on)."""
        if self.tracing is None or call.kind is None:
            return
        operation = GENAI_OPERATION[call.kind]
        call.span = self.tracing.start(
            f"{operation} {call.model}",
            {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": self.provider,
                "gen_ai.request.model": call.model,
                "server.address": self.server,
            },
        )

    def charge(self, call: Call, meter: UsageMeter, complete: bool, delivered_chars: int) -> None:
        """Price the usage and charge the budget. Estimates when usage is missing.

        A complete answer with usage is charged as reported. A stream cut
        mid-way, or one whose usage never came, is charged for what was
        delivered: reported counts where known, else ~4 characters per token.
        """
        input_tokens, output_tokens = meter.input_tokens, meter.output_tokens
        estimated = not (complete and meter.found)
        if estimated:
            input_tokens = input_tokens or estimate_tokens(len(call.body))
            output_tokens = max(output_tokens, estimate_tokens(delivered_chars))
        model = call.model or meter.response_model or "unknown"
        config = call.snapshot.budget
        price, known = config.price_for(model)
        label = config.label_for(model)
        cost = price.cost(input_tokens, output_tokens)
        m = self.metrics
        hold, call.hold = call.hold, None
        if hold is not None:
            budget = self.state.budget
            budget.settle(config, hold, cost)
            if len(hold.keys) == len(config.limits):
                for limit, key in zip(config.limits, hold.keys, strict=True):
                    m.budget_spent.labels(limit.period).set(budget.store.spent(key))
        m.tokens.labels(label, "input").inc(input_tokens)
        m.tokens.labels(label, "output").inc(output_tokens)
        m.cost.labels(label).inc(cost)
        if not known:
            m.unknown_price.inc()
            if model not in self._warned_unknown and len(self._warned_unknown) < _WARNED_MAX:
                self._warned_unknown.add(model)
                self.log.emit(
                    "warning", "unknown_model_price", model=model, charged_as="unknownModelPrice"
                )
        if estimated:
            m.usage_estimated.labels(label).inc()
        fields = call.fields
        fields["input_tokens"] = input_tokens
        fields["output_tokens"] = output_tokens
        fields["cost_usd"] = round(cost, 8)
        if estimated:
            fields["usage_estimated"] = True
            fields["usage_estimate_reason"] = "stream_cut" if not complete else "usage_missing"
        if meter.response_model:
            fields["response_model"] = meter.response_model

    def release(self, call: Call) -> None:
        """End a hold that was never charged (refused, failed, answered with an error)."""
        if call.hold is not None:
            hold, call.hold = call.hold, None
            self.state.budget.settle(call.snapshot.budget, hold, 0.0)

    def finish(self, call: Call, status: int) -> None:
        """Request metrics, one JSON log line, and the span's end."""
        duration = time.perf_counter() - call.started
        route = call.kind or "passthrough"
        model = call.snapshot.budget.label_for(call.model) if call.model else "-"
        self.metrics.requests.labels("outbound", route, str(status), model).inc()
        self.metrics.duration.labels("outbound", route).observe(duration)
        record: dict[str, Any] = {
            "request_id": call.request_id,
            "door": "outbound",
            "method": call.method,
            "path": call.path,
            "model": call.model or None,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "retries": call.retries,
            "stream": call.stream,
        }
        if call.downgraded_from is not None:
            record["downgraded_from"] = call.downgraded_from
        record.update(call.fields)
        self.log.emit("info", "request", **record)
        if call.span is not None:
            self._end_span(call, status)

    @staticmethod
    def _end_span(call: Call, status: int) -> None:
        span, fields = call.span, call.fields
        span.set_attribute("http.response.status_code", status)
        if "response_model" in fields:
            span.set_attribute("gen_ai.response.model", fields["response_model"])
        if "input_tokens" in fields:
            span.set_attribute("gen_ai.usage.input_tokens", fields["input_tokens"])
            span.set_attribute("gen_ai.usage.output_tokens", fields["output_tokens"])
        if status >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", str(status))
        span.end()
