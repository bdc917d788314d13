"""`agent-operator gateway`: wires settings, state, both doors and the admin port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent_operator.gateway.accounting import Accountant
from agent_operator.gateway.budget import Budget, Limit
from agent_operator.gateway.config import Settings, parse_settings
from agent_operator.gateway.guarding import Guard
from agent_operator.gateway.inbound import Inbound
from agent_operator.gateway.kubeapi import KubeAPI, KubeError, server_from_environment
from agent_operator.gateway.ledger import Journal, KubernetesSpendStore
from agent_operator.gateway.outbound import Outbound
from agent_operator.gateway.server import serve
from agent_operator.gateway.spend import InMemorySpendStore, SpendStore
from agent_operator.gateway.state import GatewayState, Reloader
from agent_operator.gateway.telemetry import JsonLog, LibraryLogHandler, Metrics, Tracing
from agent_operator.sidecar import (
    HEALTHZ_PATH,
    METRICS_PATH,
    POD_NAME_ENV,
    POD_UID_ENV,
    READYZ_PATH,
    REDIS_URL_ENV,
)


class Admin:
    """/healthz (live), /readyz (config and keys loaded), /metrics; unauthenticated."""

    def __init__(self, state: GatewayState, metrics: Metrics) -> None:
        self.state = state
        self.metrics = metrics

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == HEALTHZ_PATH:
            return web.Response(text="ok")
        if request.path == READYZ_PATH:
            ready = self.state.ready
            return web.Response(
                status=200 if ready else 503, text="ready" if ready else "not ready"
            )
        if request.path == METRICS_PATH:
            return web.Response(
                body=generate_latest(self.metrics.registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )
        return web.Response(status=404, text="not found")


def spend_store(settings: Settings, metrics: Metrics, log: JsonLog) -> SpendStore:
    """The store --spend-store names; ValueError or KubeError when it cannot be set up."""
    if settings.spend_store == "kubernetes":
        pod_name, pod_uid = os.environ.get(POD_NAME_ENV, ""), os.environ.get(POD_UID_ENV, "")
        if not pod_name or not pod_uid:
            raise ValueError(f"{POD_NAME_ENV} and {POD_UID_ENV} must name the pod")
        api = KubeAPI(server_from_environment(), settings.service_account_dir, settings.namespace)
        journal_dir = settings.spend_journal_dir
        return KubernetesSpendStore(
            api,
            agent=settings.agent,
            agent_uid=settings.agent_uid,
            pod_name=pod_name,
            pod_uid=pod_uid,
            flush_seconds=settings.ledger_flush_seconds,
            metrics=metrics,
            log=log,
            journal=Journal(journal_dir) if journal_dir is not None else None,
        )
    if settings.spend_store == "redis":
        from agent_operator.gateway.redis_store import RedisSpendStore

        url = os.environ.get(REDIS_URL_ENV, "")
        if not url:
            raise ValueError(f"{REDIS_URL_ENV} must hold the Redis URL")
        return RedisSpendStore(
            url,
            settings.namespace,
            settings.agent,
            on_error=lambda message: log.emit("error", "redis_failed", error=message),
        )
    return InMemorySpendStore()


def _session(auto_decompress: bool) -> aiohttp.ClientSession:
    # one pooled session per destination for the life of the process
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector,
        # a proxy must not keep cookies: they would leak from one caller to the next
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=auto_decompress,
        skip_auto_headers=("User-Agent",),
    )


async def run(settings: Settings) -> int:
    metrics = Metrics()
    log = JsonLog(agent=settings.agent, namespace=settings.namespace)
    logging.basicConfig(level=logging.WARNING, handlers=[LibraryLogHandler(log)], force=True)

    def on_alert(limit: Limit, period_key: str, threshold: float, spent: float) -> None:
        metrics.budget_alerts.labels(limit.period, f"{threshold:g}").inc()
        log.emit(
            "warning",
            "budget_alert",
            period=limit.period,
            period_key=period_key,
            threshold=threshold,
            spent_usd=round(spent, 6),
            limit_usd=limit.max_usd,
        )

    try:
        store = spend_store(settings, metrics, log)
    except (KubeError, ValueError, OSError) as exc:
        log.emit("error", "spend_store_unavailable", store=settings.spend_store, error=str(exc))
        return 2
    budget = Budget(store, on_alert)
    state = GatewayState(settings, budget)
    reloader = Reloader(state, metrics, log)
    reloader.poll()  # first load before listening; readiness reports the result
    tracing = None
    if settings.otlp_endpoint:
        try:
            tracing = Tracing(
                settings.otlp_endpoint,
                "agent-gateway",
                {"agent": settings.agent, "k8s.namespace.name": settings.namespace},
            )
        except ImportError as exc:  # serve without spans rather than not at all
            log.emit("error", "tracing_unavailable", error=str(exc))
    extras = settings.prompt_guard_extra_patterns
    guard = Guard(settings.prompt_guard, extras)
    tool_guard = guard.for_mode(settings.prompt_guard_outbound, extras)

    upstream_session = _session(auto_decompress=True)
    agent_session = _session(auto_decompress=False)  # pure pass-through of encodings
    accountant = Accountant(settings, state, metrics, log, tracing)
    outbound = Outbound(settings, state, accountant, metrics, log, upstream_session, tool_guard)
    inbound = Inbound(settings, state, guard, metrics, log, agent_session)
    admin = Admin(state, metrics)

    runners = [
        await serve(
            handler,
            listen,
            door=door,
            log=log,
            max_connections=settings.max_connections,
            header_timeout=settings.header_timeout_seconds,
        )
        for door, handler, listen in (
            ("admin", admin.handle, settings.admin),
            ("outbound", outbound.handle, settings.outbound),
            ("inbound", inbound.handle, settings.inbound),
        )
    ]
    log.emit(
        "info",
        "started",
        provider=settings.provider,
        ready=state.ready,
        inbound=f"{settings.inbound.host}:{settings.inbound.port}",
        outbound=f"{settings.outbound.host}:{settings.outbound.port}",
        admin=f"{settings.admin.host}:{settings.admin.port}",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    poller = asyncio.create_task(reloader.run(settings.reload_interval_seconds))
    await store.start()
    try:
        await stop.wait()
    finally:
        log.emit("info", "stopping")
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        # inbound first: stop taking callers, let in-flight calls finish outbound
        for runner in reversed(runners):
            await runner.cleanup()
        await store.close()  # after the last call: its spend is written
        await upstream_session.close()
        await agent_session.close()
        if tracing is not None:
            tracing.shutdown()
    return 0


def main(argv: list[str]) -> int:
    settings = parse_settings(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(run(settings))
    return uvloop.run(run(settings))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
