"""Command line of the gateway: the flags the operator renders, parsed once.

The flag set is fixed by docs/architecture.md; every path is a flag so the
same command runs outside a pod with the mount paths remapped.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from agent_operator.sidecar import (
    ALLOW_UNMETERED_FLAG,
    DEFAULT_MAX_REQUEST_BODY_BYTES,
    MAX_REQUEST_BODY_BYTES_FLAG,
    UNMETERED_ENDPOINTS,
)

PROVIDERS = ("openai", "anthropic", "azure-openai", "openai-compatible")
GUARD_MODES = ("block", "flag", "off")


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Settings:
    """Immutable process settings; reloadable state (keys, budget) lives elsewhere."""

    provider: str
    upstream_url: str
    agent_url: str
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
    prompt_guard_extra_patterns: tuple[str, ...] = field(default_factory=tuple)
    otlp_endpoint: str | None = None
    agent: str = "agent"
    namespace: str = "default"
    allow_unmetered: frozenset[str] = frozenset()
    max_request_body_bytes: int = DEFAULT_MAX_REQUEST_BODY_BYTES
    # not rendered by the operator: protection of both doors against slow or
    # numerous clients (defaults documented in docs/gateway.md)
    max_connections: int = 1024
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    # not rendered by the operator: seconds between file polls (tests shorten it)
    reload_interval_seconds: float = 1.0


def parse_listen(value: str) -> Listen:
    """`HOST:PORT` (IPv6 as `[::1]:8080`) -> Listen."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return Listen(host.strip("[]") or "0.0.0.0", int(port))


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}")
        return number

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agent-operator gateway", description=__doc__)
    p.add_argument("--provider", choices=PROVIDERS, required=True)
    p.add_argument("--upstream-url", type=_url, required=True)
    p.add_argument("--agent-url", type=_url, default="http://127.0.0.1:8000")
    p.add_argument("--inbound-listen", type=parse_listen, default=parse_listen("0.0.0.0:8080"))
    p.add_argument("--outbound-listen", type=parse_listen, default=parse_listen("127.0.0.1:8081"))
    p.add_argument("--admin-listen", type=parse_listen, default=parse_listen("0.0.0.0:9090"))
    p.add_argument("--credentials-dir", type=Path, required=True)
    p.add_argument("--client-keys-dir", type=Path, default=None)
    p.add_argument("--budget-dir", type=Path, default=None)
    p.add_argument("--timeout-seconds", type=_positive, default=30.0)
    p.add_argument("--retry-attempts", type=int, default=3)
    p.add_argument("--retry-backoff-min-seconds", type=float, default=1.0)
    p.add_argument("--retry-backoff-max-seconds", type=float, default=10.0)
    p.add_argument("--breaker-failure-threshold", type=int, default=5)
    p.add_argument("--breaker-open-seconds", type=_positive, default=30.0)
    p.add_argument("--prompt-guard", choices=GUARD_MODES, default="block")
    p.add_argument("--prompt-guard-extra-pattern", action="append", default=[])
    p.add_argument("--otlp-endpoint", default=None)
    p.add_argument("--agent", default="agent")
    p.add_argument("--namespace", default="default")
    p.add_argument(ALLOW_UNMETERED_FLAG, choices=UNMETERED_ENDPOINTS, action="append", default=[])
    p.add_argument(
        MAX_REQUEST_BODY_BYTES_FLAG, type=_at_least(1024), default=DEFAULT_MAX_REQUEST_BODY_BYTES
    )
    p.add_argument("--max-connections", type=_at_least(1), default=1024)
    p.add_argument("--header-timeout-seconds", type=_positive, default=10.0)
    p.add_argument("--body-timeout-seconds", type=_positive, default=30.0)
    return p


def parse_settings(argv: list[str]) -> Settings:
    """Parse the rendered command line; exits with status 2 on a bad flag."""
    ns = build_parser().parse_args(argv)
    if ns.retry_attempts < 1:
        raise SystemExit("agent-operator gateway: --retry-attempts must be >= 1")
    if ns.retry_backoff_max_seconds < ns.retry_backoff_min_seconds:
        raise SystemExit("agent-operator gateway: backoff max must be >= backoff min")
    reload_interval = float(os.environ.get("AGENT_GATEWAY_RELOAD_INTERVAL_SECONDS", "1.0"))
    return Settings(
        provider=ns.provider,
        upstream_url=ns.upstream_url,
        agent_url=ns.agent_url,
        inbound=ns.inbound_listen,
        outbound=ns.outbound_listen,
        admin=ns.admin_listen,
        credentials_dir=ns.credentials_dir,
        client_keys_dir=ns.client_keys_dir,
        budget_dir=ns.budget_dir,
        timeout_seconds=ns.timeout_seconds,
        retry_attempts=ns.retry_attempts,
        retry_backoff_min_seconds=ns.retry_backoff_min_seconds,
        retry_backoff_max_seconds=ns.retry_backoff_max_seconds,
        breaker_failure_threshold=max(1, ns.breaker_failure_threshold),
        breaker_open_seconds=ns.breaker_open_seconds,
        prompt_guard=ns.prompt_guard,
        prompt_guard_extra_patterns=tuple(ns.prompt_guard_extra_pattern),
        otlp_endpoint=ns.otlp_endpoint or None,
        agent=ns.agent,
        namespace=ns.namespace,
        reload_interval_seconds=max(0.05, reload_interval),
        allow_unmetered=frozenset(ns.allow_unmetered),
        max_request_body_bytes=ns.max_request_body_bytes,
        max_connections=ns.max_connections,
        header_timeout_seconds=ns.header_timeout_seconds,
        body_timeout_seconds=ns.body_timeout_seconds,
    )
