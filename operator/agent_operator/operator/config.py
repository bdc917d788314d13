"""Settings of `agent-operator run`: flags, each with an AGENT_OPERATOR_* environment default."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

from agent_operator.builders import BuildOptions
from agent_operator.builders.options import PullPolicy

ENV_PREFIX = "AGENT_OPERATOR_"
# TEST HOOK, not a setting: seconds (float, may be negative) added to the wall
# clock for the budget alone (periods, resetsAt, when a period ends), so that
# e2e tests can put the operator just before a UTC period boundary. No flag.
CLOCK_OFFSET_ENV = ENV_PREFIX + "CLOCK_OFFSET_SECONDS"
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("json", "text")
# kopf's keep-alive comes every lifetime - 5..10 s but at least every second:
# below 5 s a keep-alive could not land before the record it renews expires.
MIN_PEERING_LIFETIME: Final = 5


@dataclass(frozen=True)
class Config:
    """Everything `run` needs; see docs/operator.md."""

    namespaces: tuple[str, ...]
    peering: str | None
    standalone: bool
    priority: int | None  # None: auto, derived at start (peering.auto_priority)
    peering_lifetime_seconds: int
    workers: int
    resync_seconds: float
    backoff_base_seconds: float
    backoff_max_seconds: float
    watch_timeout_seconds: int  # the API refuses a fractional timeoutSeconds
    metrics_port: int
    health_port: int
    log_format: str  # one of LOG_FORMATS
    log_level: str  # one of LOG_LEVELS
    build: BuildOptions
    time_scale: float = 1.0  # testing only: rotation durations pass this many times faster
    clock_offset_seconds: float = 0.0  # testing only: see CLOCK_OFFSET_ENV

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def verbose(self) -> bool:
        return self.log_level == "debug"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _priority(value: str) -> int | Literal["auto"]:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or 'auto': {value!r}") from None


def _default_log_level(env: Mapping[str, str]) -> str:
    level = env.get(ENV_PREFIX + "LOG_LEVEL", "").strip()
    if level:
        return level
    return "debug" if _truthy(env.get(ENV_PREFIX + "VERBOSE")) else "info"


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def default(name: str, fallback: str) -> str:
        return env.get(ENV_PREFIX + name, fallback)

    p = argparse.ArgumentParser(
        prog="agent-operator run",
        description="Run the AgentDeployment operator. Every flag has an environment default "
        f"{ENV_PREFIX}<FLAG> (upper case, '-' as '_').",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        dest="namespaces",
        help="watch this namespace (repeatable; env NAMESPACES, comma-separated)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default without --namespace)",
    )
    peer = p.add_mutually_exclusive_group()
    peer.add_argument(
        "--peering",
        default=default("PEERING", "") or None,
        metavar="NAME",
        help="kopf peering object NAME: of several replicas only one acts "
        "(needs the KopfPeering CRD)",
    )
    peer.add_argument(
        "--standalone",
        action="store_true",
        default=_truthy(env.get(ENV_PREFIX + "STANDALONE")),
        help="no peering: for a single replica",
    )
    p.add_argument(
        "--priority",
        type=_priority,
        default=env.get(ENV_PREFIX + "PRIORITY") or None,
        metavar="N|auto",
        help="peering priority: the highest live one acts. 'auto' (the default with "
        "--peering, else 0): below every explicit priority >= 0, the earliest started "
        "replica first",
    )
    p.add_argument(
        "--peering-lifetime-seconds",
        type=int,
        default=int(default("PEERING_LIFETIME_SECONDS", "10")),
        help="a replica that stops renewing its peering record (kill -9) is taken "
        "over after at most this long; renewed every 1-5 s (kopf: lifetime - 5..10 s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(default("WORKERS", "16")),
        help="reconciles running at once (each waits on the API server most of its time)",
    )
    p.add_argument(
        "--resync-seconds",
        type=float,
        default=float(default("RESYNC_SECONDS", "600")),
        help="re-check every AgentDeployment this often, even without events",
    )
    p.add_argument(
        "--backoff-base-seconds",
        type=float,
        default=float(default("BACKOFF_BASE_SECONDS", "1")),
        help="first retry delay after a problem; doubles per retry",
    )
    p.add_argument(
        "--backoff-max-seconds",
        type=float,
        default=float(default("BACKOFF_MAX_SECONDS", "300")),
        help="retry delay cap",
    )
    p.add_argument(
        "--watch-timeout-seconds",
        type=int,
        default=int(default("WATCH_TIMEOUT_SECONDS", "300")),
        help="server-side timeout of one watch request (reconnects after it)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(default("METRICS_PORT", "8080")),
        help="port of /metrics (0: off)",
    )
    p.add_argument(
        "--health-port",
        type=int,
        default=int(default("HEALTH_PORT", "8081")),
        help="port of /healthz (live) and /readyz (ready) (0: off)",
    )
    p.add_argument(
        "--log-format",
        type=str.lower,
        choices=LOG_FORMATS,
        default=default("LOG_FORMAT", "json"),
        help="json: one JSON object a line (the default); text: kopf's plain lines",
    )
    # Both write log_level; the last one given wins. -v keeps the default of --log-level.
    p.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=_default_log_level(env),
        help="least severe level logged (env LOG_LEVEL; VERBOSE=true means debug)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_const",
        const="debug",
        dest="log_level",
        default=argparse.SUPPRESS,
        help="the same as --log-level debug",
    )
    p.add_argument(
        "--gateway-image",
        default=default("GATEWAY_IMAGE", BuildOptions.gateway_image),
        help="image of the gateway sidecar",
    )
    p.add_argument(
        "--gateway-image-pull-policy",
        choices=list(get_args(PullPolicy)),
        default=default("GATEWAY_IMAGE_PULL_POLICY", BuildOptions.gateway_image_pull_policy),
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=float(default("TIME_SCALE", "1")),
        help="TESTING ONLY: rotation schedules and grace periods pass this many "
        "times faster (60: a minute lasts a second)",
    )
    return p


def load(argv: list[str], env: Mapping[str, str] | None = None) -> Config:
    """Parse flags over environment defaults (`env` defaults to os.environ)."""
    env = os.environ if env is None else env
    p = parser(env)
    args = p.parse_args(argv)
    # argparse checks `choices` of given flags only, not of environment defaults.
    for value, choices, name in (
        (args.log_level, LOG_LEVELS, "LOG_LEVEL"),
        (args.log_format, LOG_FORMATS, "LOG_FORMAT"),
    ):
        if value not in choices:
            p.error(f"{ENV_PREFIX}{name}: {value!r} is not one of {', '.join(choices)}")
    if args.peering_lifetime_seconds < MIN_PEERING_LIFETIME:
        p.error(f"--peering-lifetime-seconds: at least {MIN_PEERING_LIFETIME}")
    priority: int | str = args.priority
    if priority is None:
        priority = "auto" if args.peering else 0
    namespaces = args.namespaces
    if namespaces is None and not args.all_namespaces:
        namespaces = [n for n in env.get(ENV_PREFIX + "NAMESPACES", "").split(",") if n.strip()]
    return Config(
        namespaces=tuple(n.strip() for n in namespaces or ()),
        peering=args.peering,
        standalone=args.standalone,
        priority=priority if isinstance(priority, int) else None,
        peering_lifetime_seconds=args.peering_lifetime_seconds,
        workers=max(1, args.workers),
        resync_seconds=args.resync_seconds,
        backoff_base_seconds=args.backoff_base_seconds,
        backoff_max_seconds=args.backoff_max_seconds,
        watch_timeout_seconds=args.watch_timeout_seconds,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        log_format=args.log_format,
        log_level=args.log_level,
        build=BuildOptions(
            gateway_image=args.gateway_image,
            gateway_image_pull_policy=args.gateway_image_pull_policy,
        ),
        time_scale=args.time_scale if args.time_scale > 0 else 1.0,
        clock_offset_seconds=_offset(env.get(CLOCK_OFFSET_ENV, "")),
    )


def _offset(value: str) -> float:
    try:
        offset = float(value or 0)
    except ValueError as err:
        raise SystemExit(f"{CLOCK_OFFSET_ENV}: not a number of seconds: {value!r}") from err
    return offset if math.isfinite(offset) else 0.0
