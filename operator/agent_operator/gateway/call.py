"""The record of one outbound request, filled in hop by hop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_operator.gateway.spend import Hold
    from agent_operator.gateway.state import Snapshot


@dataclass(slots=True)
class Call:
    """One outbound request as the gateway sees it (times from perf_counter, seconds)."""

    request_id: str
    method: str
    path: str
    kind: str | None  # billed endpoint kind, None for pass-through
    body: bytes
    started: float
    snapshot: Snapshot  # the reloadable state, captured once when the request arrived
    payload: dict[str, Any] | None = None
    model: str = ""
    stream: bool = False
    strip_usage_chunk: bool = False
    downgraded_from: str | None = None
    retries: int = 0
    span: Any = None
    hold: Hold | None = None  # the budget's permission, until the call is settled
    # extra log fields (tokens, cost, errors)
    fields: dict[str, Any] = field(default_factory=dict)
