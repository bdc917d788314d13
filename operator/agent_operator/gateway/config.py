"""Settings of the gateway process, from the command line the operator renders.

The flags themselves (names, defaults, validation) are `sidecar.GatewayArgs`,
shared with the builder that renders them; this module turns the parsed
arguments into the immutable settings the gateway runs with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent_operator.sidecar import SERVICE_ACCOUNT_DIR, GatewayArgs, Listen, parse

# Seconds between polls of the mounted files; tests shorten it.
RELOAD_INTERVAL_ENV = "AGENT_GATEWAY_RELOAD_INTERVAL_SECONDS"


@dataclass(frozen=True, slots=True)
class Settings:
    """Immutable process settings; reloadable state (keys, budget) lives elsewhere.

    Defaults are GatewayArgs'; units as its flags (seconds, bytes).
    """

    provider: str
    upstream_url: str  # no trailing slash
    agent_url: str  # no trailing slash
    inbound: Listen
    outbound: Listen
    admin: Listen
    credentials_dir: Path
    client_keys_dir: Path | None
    budget_dir: Path | None
    timeout_seconds: float
    retry_attempts: int
    retry_backoff_min_seconds: float
    retry_backoff_max_seconds: float
    breaker_failure_threshold: int
    breaker_open_seconds: float
    prompt_guard: str
    prompt_guard_extra_patterns: tuple[str, ...]
    prompt_guard_outbound: str
    prompt_guard_outbound_roles: frozenset[str]
    otlp_endpoint: str | None
    agent: str
    namespace: str
    allow_unmetered: frozenset[str]
    max_request_body_bytes: int
    max_connections: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    reload_interval_seconds: float
    spend_store: str = "memory"
    agent_uid: str = ""
    service_account_dir: Path = Path(SERVICE_ACCOUNT_DIR)
    ledger_flush_seconds: float = 2.0
    spend_journal_dir: Path | None = None

    @classmethod
    def from_args(cls, args: GatewayArgs, reload_interval_seconds: float = 1.0) -> Settings:
        """The settings for parsed `args`; `reload_interval_seconds` is floored at 0.05."""
        return cls(
            provider=args.provider,
            upstream_url=args.upstream_url.rstrip("/"),
            agent_url=args.agent_url.rstrip("/"),
            inbound=args.inbound_listen,
            outbound=args.outbound_listen,
            admin=args.admin_listen,
            credentials_dir=args.credentials_dir,
            client_keys_dir=args.client_keys_dir,
            budget_dir=args.budget_dir,
            timeout_seconds=args.timeout_seconds,
            retry_attempts=args.retry_attempts,
            retry_backoff_min_seconds=args.retry_backoff_min_seconds,
            retry_backoff_max_seconds=args.retry_backoff_max_seconds,
            breaker_failure_threshold=args.breaker_failure_threshold,
            breaker_open_seconds=args.breaker_open_seconds,
            prompt_guard=args.prompt_guard,
            prompt_guard_extra_patterns=args.prompt_guard_extra_patterns,
            prompt_guard_outbound=args.prompt_guard_outbound,
            prompt_guard_outbound_roles=args.prompt_guard_outbound_roles,
            otlp_endpoint=args.otlp_endpoint or None,
            agent=args.agent,
            namespace=args.namespace,
            allow_unmetered=args.allow_unmetered,
            max_request_body_bytes=args.max_request_body_bytes,
            max_connections=args.max_connections,
            header_timeout_seconds=args.header_timeout_seconds,
            body_timeout_seconds=args.body_timeout_seconds,
            reload_interval_seconds=max(0.05, reload_interval_seconds),
            spend_store=args.spend_store,
            agent_uid=args.agent_uid,
            service_account_dir=args.service_account_dir,
            ledger_flush_seconds=args.ledger_flush_seconds,
            spend_journal_dir=args.spend_journal_dir,
        )


def parse_settings(argv: Sequence[str]) -> Settings:
    """Parse the rendered command line; exits with status 2 on a bad flag."""
    args = parse(argv)
    return Settings.from_args(args, float(os.environ.get(RELOAD_INTERVAL_ENV, "1.0")))
