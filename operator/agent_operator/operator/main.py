"""`agent-operator run`: the operator process (kopf under the hood)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time

import kopf
from kopf._core.engines.peering import Identity  # kopf takes it in run() but does not export it

from agent_operator.api import KIND
from agent_operator.builders.labels import MANAGED_BY
from agent_operator.operator import config as settings
from agent_operator.operator import metrics
from agent_operator.operator.cache import ObjectCache
from agent_operator.operator.handlers import CACHED, WATCHED, Runtime, register
from agent_operator.operator.health import (
    HealthServer,
    Readiness,
    WatchTracker,
    feed_cache,
    track_kopf_watches,
)
from agent_operator.operator.kube import CachedKube, Kube
from agent_operator.operator.peering import PeeringMonitor, auto_priority
from agent_operator.operator.reconcile import Reconciler
from agent_operator.operator.spendledger import SpendLedger

log = logging.getLogger("agent_operator.operator")


def configure_logging(config: settings.Config) -> None:
    """kopf's formatter (JSON lines or text) on the root logger, at `config.log_level`."""
    kopf.configure(
        verbose=config.verbose,
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
        log_prefix=config.log_format != "json",
    )
    level = logging.getLevelNamesMapping()[config.log_level.upper()]
    logging.getLogger().setLevel(level)
    # The Kubernetes client logs every retried connection at WARNING; ours say enough.
    logging.getLogger("urllib3").setLevel(max(level, logging.ERROR))
    # kopf logs "Handler ... succeeded" per watch event, and aiohttp every request.
    chatty = level if config.verbose else max(level, logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(chatty)
    logging.getLogger("aiohttp.access").setLevel(chatty)


def main(argv: list[str]) -> int:
    config = settings.load(argv)
    configure_logging(config)
    metrics.serve(config.metrics_port)
    # What the watches see, indexed: reconciles read it instead of sending GETs.
    cache = ObjectCache(
        MANAGED_BY,
        whole=(KIND,),
        metadata_only=("Secret",),
        field_owners=("Deployment",),  # who owns spec.replicas (operator/compare.py)
    )
    feed_cache(cache, CACHED)
    kube = CachedKube(Kube.client_from_environment(config.workers), cache)
    # Our own identity, so the peering gate can tell this replica from its peers.
    identity = f"agent-operator@{os.environ.get('POD_NAME') or socket.gethostname()}/"
    identity += secrets.token_hex(4)
    priority = config.priority
    if priority is None:
        priority = auto_priority(time.time(), secrets.randbelow(1024))
    scopes = [None] if config.clusterwide else list(config.namespaces)
    gate = PeeringMonitor(
        kube,
        None if config.standalone else (config.peering or "default"),
        identity,
        priority,
        scopes=scopes,
        mandatory=config.peering is not None,
        lifetime=config.peering_lifetime_seconds,
    )
    tracker = WatchTracker()
    track_kopf_watches(tracker)
    health = None
    if config.health_port:
        health = HealthServer(config.health_port, Readiness(tracker, gate, WATCHED, scopes))
    offset = config.clock_offset_seconds
    if offset:
        log.warning("TEST HOOK: the budget clock runs %+.1fs off the wall clock", offset)
    spend = SpendLedger(kube, clock=lambda: time.time() + offset)
    reconciler = Reconciler(kube, config.build, time_scale=config.time_scale, ledger=spend)
    runtime = Runtime(config, reconciler, gate, cache)
    registry = kopf.OperatorRegistry()
    register(registry, runtime, health)
    log.info(
        "starting: namespaces=%s peering=%s standalone=%s identity=%s priority=%d%s workers=%d",
        ",".join(config.namespaces) or "<all>",
        config.peering,
        config.standalone,
        identity,
        priority,
        " (auto)" if config.priority is None else "",
        config.workers,
    )
    kopf.run(
        registry=registry,
        identity=Identity(identity),
        clusterwide=config.clusterwide,
        namespaces=config.namespaces,
        standalone=config.standalone or None,
        peering_name=config.peering,
        priority=priority,
        # no liveness_endpoint: our HealthServer serves /healthz and /readyz on that port
    )
    return 0
