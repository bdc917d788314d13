"""`agent-operator run`: the operator process (kopf under the hood)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time

import kopf
from kopf._core.engines.peering import Identity  # kopf takes it in run() but does not export it

from agent_operator.operator import config as settings
from agent_operator.operator import metrics
from agent_operator.operator.handlers import Runtime, register
from agent_operator.operator.kube import Kube
from agent_operator.operator.peering import PeeringGate
from agent_operator.operator.reconcile import Reconciler
from agent_operator.operator.spendledger import SpendLedger

log = logging.getLogger("agent_operator.operator")


def main(argv: list[str]) -> int:
    config = settings.load(argv)
    kopf.configure(
        verbose=config.verbose,
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
        log_prefix=config.log_format != "json",
    )
    # The Kubernetes client logs every retried connection at WARNING; ours say enough.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    if not config.verbose:
        # kopf logs "Handler ... succeeded" per watch event, and aiohttp every probe.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    metrics.serve(config.metrics_port)
    kube = Kube.from_environment()
    # Our own identity, so the peering gate can tell this replica from its peers.
    identity = f"agent-operator@{os.environ.get('POD_NAME') or socket.gethostname()}/"
    identity += secrets.token_hex(4)
    peering = None if config.standalone else (config.peering or "default")
    gate = PeeringGate(kube, peering, identity, config.priority, config.clusterwide)
    offset = config.clock_offset_seconds
    if offset:
        log.warning("TEST HOOK: the budget clock runs %+.1fs off the wall clock", offset)
    spend = SpendLedger(kube, clock=lambda: time.time() + offset)
    reconciler = Reconciler(kube, config.build, time_scale=config.time_scale, ledger=spend)
    runtime = Runtime(config, reconciler, gate)
    registry = kopf.OperatorRegistry()
    register(registry, runtime)
    log.info(
        "starting: namespaces=%s peering=%s standalone=%s workers=%d",
        ",".join(config.namespaces) or "<all>",
        config.peering,
        config.standalone,
        config.workers,
    )
    kopf.run(
        registry=registry,
        identity=Identity(identity),
        clusterwide=config.clusterwide,
        namespaces=config.namespaces,
        standalone=config.standalone or None,
        peering_name=config.peering,
        priority=config.priority,
        liveness_endpoint=(
            f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None
        ),
    )
    return 0
