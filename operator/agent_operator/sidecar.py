"""Facts the operator and the gateway sidecar both depend on, defined once.

Pure: the API types and builders render from these, the gateway parses and
enforces them; neither side spells them out again. Four contracts live here:

- names and paths: the gateway's ports, the volumes it mounts and where;
- the Secret layout of `X-credentials` and `X-client-keys`;
- `budget.json`, the ConfigMap file the gateway enforces (`BudgetFile`);
- the gateway's command line (`GatewayArgs`: `to_argv` renders it, `parse`
  reads it back).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

# --- ports and admin endpoints -----------------------------------------------

INBOUND_PORT: Final = 8080  # callers -> agent (the Service's port, named `http`)
OUTBOUND_PORT: Final = 8081  # agent -> provider, on 127.0.0.1 only
ADMIN_PORT: Final = 9090  # /healthz, /readyz, /metrics (named `admin`)
GATEWAY_PORTS: Final = (INBOUND_PORT, OUTBOUND_PORT, ADMIN_PORT)
HEALTHZ_PATH: Final = "/healthz"
READYZ_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"
# The Pods metric the HPA reads (autoscaling.targetInflightRequests).
INFLIGHT_METRIC: Final = "agent_gateway_inflight_requests"

# --- volumes the gateway mounts (whole volumes, read-only) ---------------------

MOUNT_ROOT: Final = "/var/run/agents.dev"
CREDENTIALS_VOLUME: Final = "credentials"  # Secret X-credentials
CLIENT_KEYS_VOLUME: Final = "client-keys"  # Secret X-client-keys (clientAuth.enabled)
BUDGET_VOLUME: Final = "budget"  # ConfigMap X-budget
# an emptyDir of the gateway's own: spend not yet in the shared ledger, so a
# container restart (OOM kill, kill -9) loses none of it
SPEND_JOURNAL_VOLUME: Final = "spend-journal"
SPEND_JOURNAL_DIR: Final = f"{MOUNT_ROOT}/{SPEND_JOURNAL_VOLUME}"
CREDENTIALS_DIR: Final = f"{MOUNT_ROOT}/{CREDENTIALS_VOLUME}"
CLIENT_KEYS_DIR: Final = f"{MOUNT_ROOT}/{CLIENT_KEYS_VOLUME}"
BUDGET_DIR: Final = f"{MOUNT_ROOT}/{BUDGET_VOLUME}"

# --- the gateway's own identity (kubernetes spend store) ------------------------

# The projected service-account token, the cluster CA and the namespace, in the
# gateway container only (where in-cluster clients look for them).
SERVICE_ACCOUNT_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_VOLUME: Final = "gateway-token"
TOKEN_EXPIRATION_SECONDS: Final = 3607  # the kubelet refreshes the file at 80%
# The pod's name and uid, from the downward API.
POD_NAME_ENV: Final = "AGENT_GATEWAY_POD_NAME"
POD_UID_ENV: Final = "AGENT_GATEWAY_POD_UID"
# The Redis URL (spec.budget.redis.urlSecretRef), as env from that Secret.
REDIS_URL_ENV: Final = "AGENT_GATEWAY_REDIS_URL"

# --- Secret layout (X-credentials and X-client-keys) ---------------------------

CURRENT: Final = "current"  # the key in use
PREVIOUS: Final = "previous"  # the key before it, valid until PREVIOUS_EXPIRES_AT
PREVIOUS_EXPIRES_AT: Final = "previous-expires-at"  # RFC 3339 UTC
# a client key staged before it becomes `current`: gateways accept it while
# callers (who read `current`) do not know it yet, so no caller ever presents
# a key that a pod has not received (client keys only)
NEXT: Final = "next"
SECRET_FILES: Final = (CURRENT, PREVIOUS, PREVIOUS_EXPIRES_AT, NEXT)

# --- what the API and the gateway both enumerate --------------------------------

Provider = Literal["openai", "anthropic", "azure-openai", "openai-compatible"]
PROVIDERS: Final = get_args(Provider)
GuardMode = Literal["block", "flag", "off"]
GUARD_MODES: Final = get_args(GuardMode)
# Message roles the outbound guard may screen besides tool results (which it
# always screens when on): spec.gateway.promptGuard.outboundRoles.
ScreenableRole = Literal["user", "assistant", "system", "developer"]
SCREENABLE_ROLES: Final = get_args(ScreenableRole)
# Where spend is kept (docs/budget.md): this process only, the shared
# SpendRecord ledger on the Kubernetes API, or Redis (strict, opt-in).
SpendStoreKind = Literal["memory", "kubernetes", "redis"]
SPEND_STORES: Final = get_args(SpendStoreKind)

# Endpoints that cost money but whose spend the gateway cannot meter from the
# answer (or that mint keys). Refused with 403 unless the AgentDeployment lists
# the name in spec.gateway.allowUnmeteredEndpoints (flag --allow-unmetered).
# `completions` (legacy text completions) is metered once allowed.
UNMETERED_ENDPOINTS: Final = (
    "assistants-runs",
    "audio",
    "batches",
    "completions",
    "fine-tuning",
    "images",
    "realtime",
    "videos",
)

# Inbound bodies the prompt guard reads whole are refused with 413 above this.
DEFAULT_MAX_REQUEST_BODY_BYTES: Final = 4 * 1024 * 1024

# --- budget.json (ConfigMap X-budget) ------------------------------------------

BUDGET_FILE: Final = "budget.json"
BudgetPeriod = Literal["hour", "day", "week", "month"]
OnExhausted = Literal["reject", "downgrade"]
# Charged for a model in no price table: expensive on purpose (USD per 1M tokens).
DEFAULT_UNKNOWN_MODEL_PRICE: Final = (15.0, 60.0)


class _BudgetFileModel(BaseModel):
    """Base of budget.json objects: camelCase, strict JSON types, finite numbers.

    Strict: the file is machine-written, so `"10"` for a number is a bug, not
    a value to coerce. Unknown keys are ignored so that a gateway still running
    the previous image reads a file a newer operator wrote.
    """

    model_config = ConfigDict(
        frozen=True,
        strict=True,
        extra="ignore",
        allow_inf_nan=False,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


class BudgetFilePrice(_BudgetFileModel):
    """USD per 1M tokens."""

    input: float = Field(ge=0)
    """USD per 1M input (prompt) tokens."""
    output: float = Field(ge=0)
    """USD per 1M output (completion) tokens."""


class BudgetFileLimit(_BudgetFileModel):
    """A spend limit per calendar period (UTC)."""

    period: BudgetPeriod
    """hour, day, week (ISO, from Monday) or month."""
    max_usd: float = Field(ge=0, alias="maxUSD")
    """Spend limit in USD for the period (0: nothing may be spent)."""


class BudgetFile(_BudgetFileModel):
    """The content of `budget.json`: the builder writes it, the gateway validates it.

    Prices are the built-in table merged with spec.budget.prices. Without
    spec.budget the file has no limits: spend is still counted and priced.
    """

    limits: tuple[BudgetFileLimit, ...] = ()
    """Spend limits, checked in this order."""
    alert_thresholds: tuple[Annotated[float, Field(gt=0, le=1)], ...] = Field(
        (), alias="alertThresholds"
    )
    """Fractions of each limit at which an alert fires once per period."""
    on_exhausted: OnExhausted = Field("reject", alias="onExhausted")
    """reject: answer 429; downgrade: rewrite the request to downgradeModel."""
    downgrade_model: Annotated[str, Field(min_length=1)] | None = Field(
        None, alias="downgradeModel"
    )
    """The model a downgraded request is rewritten to; required for downgrade."""
    prices: dict[str, BudgetFilePrice] = {}
    """Prices by model name."""
    unknown_model_price: BudgetFilePrice = Field(
        BudgetFilePrice(
            input=DEFAULT_UNKNOWN_MODEL_PRICE[0], output=DEFAULT_UNKNOWN_MODEL_PRICE[1]
        ),
        alias="unknownModelPrice",
    )
    """Charged for a model in no price table, never free."""

    @model_validator(mode="after")
    def _downgrade_needs_a_model(self) -> BudgetFile:
        if self.on_exhausted == "downgrade" and self.downgrade_model is None:
            raise ValueError("downgradeModel is required when onExhausted is downgrade")
        return self


# --- the gateway's command line --------------------------------------------------

GATEWAY_ENTRYPOINT: Final = ("agent-operator", "gateway")
ALLOW_UNMETERED_FLAG: Final = "--allow-unmetered"
MAX_REQUEST_BODY_BYTES_FLAG: Final = "--max-request-body-bytes"


@dataclass(frozen=True, slots=True)
class Listen:
    """A listen address."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(value: str) -> Listen:
    """`HOST:PORT` (IPv6 as `[::1]:8080`, empty host: all interfaces) -> Listen."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return Listen(host.strip("[]") or "0.0.0.0", int(port))


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {value!r}")
    return value


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def _at_least(minimum: int) -> Callable[[str], int]:
    def integer(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}")
        return number

    return integer


def _render_number(value: float) -> str:
    """A flag value: `30` rather than `30.0`; repr keeps every digit of the rest."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class _Flag:
    """How one GatewayArgs field is rendered and parsed."""

    name: str
    help: str
    parse: Callable[[str], Any] = str
    render: Callable[[Any], str] = str
    metavar: str | None = None
    choices: Sequence[str] | None = None
    # rendered even at its default (the operator's command spells every
    # setting out); False: only when it differs (absent = default)
    always: bool = True
    # repeatable: one flag per item, collected into this type
    repeat: type[tuple[Any, ...]] | type[frozenset[Any]] | None = None


def _flag(name: str, help: str, **options: Any) -> dict[str, _Flag]:
    return {"flag": _Flag(name, help, **options)}


_URL: Final[dict[str, Any]] = {"parse": _url, "metavar": "URL"}
_LISTEN: Final[dict[str, Any]] = {"parse": parse_listen, "metavar": "HOST:PORT"}
_DIR: Final[dict[str, Any]] = {"parse": Path, "metavar": "DIR"}
_SECONDS: Final[dict[str, Any]] = {"parse": _positive, "render": _render_number, "metavar": "S"}


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayArgs:
    """The gateway's settings as its command line carries them (seconds, bytes).

    Field order is the order `to_argv` renders; each field's metadata names
    its flag. The defaults are what a pod gets: the listen addresses are the
    pod's ports, the protection limits at the end are not rendered at all.
    Constraints match the API's, so whatever the builder renders parses.
    """

    provider: Provider = field(
        metadata=_flag("--provider", "wire protocol of the upstream", choices=PROVIDERS)
    )
    upstream_url: str = field(metadata=_flag("--upstream-url", "provider base URL", **_URL))
    agent_url: str = field(
        default="http://127.0.0.1:8000",
        metadata=_flag("--agent-url", "where the inbound door forwards to", **_URL),
    )
    inbound_listen: Listen = field(
        default=Listen("0.0.0.0", INBOUND_PORT),
        metadata=_flag("--inbound-listen", "callers' door", **_LISTEN),
    )
    outbound_listen: Listen = field(
        default=Listen("127.0.0.1", OUTBOUND_PORT),
        metadata=_flag("--outbound-listen", "the agent's LLM door", **_LISTEN),
    )
    admin_listen: Listen = field(
        default=Listen("0.0.0.0", ADMIN_PORT),
        metadata=_flag(
            "--admin-listen", f"{HEALTHZ_PATH}, {READYZ_PATH}, {METRICS_PATH}", **_LISTEN
        ),
    )
    credentials_dir: Path = field(
        metadata=_flag(
            "--credentials-dir", f"mounted Secret X-credentials ({', '.join(SECRET_FILES)})", **_DIR
        )
    )
    client_keys_dir: Path | None = field(
        default=None,
        metadata=_flag(
            "--client-keys-dir",
            "mounted Secret X-client-keys; absent: inbound auth off",
            always=False,
            **_DIR,
        ),
    )
    budget_dir: Path | None = field(
        default=None,
        metadata=_flag(
            "--budget-dir",
            f"mounted ConfigMap X-budget ({BUDGET_FILE}); absent: no limits",
            always=False,
            **_DIR,
        ),
    )
    timeout_seconds: float = field(
        default=30.0,
        metadata=_flag("--timeout-seconds", "total time to get a response", **_SECONDS),
    )
    retry_attempts: int = field(
        default=3,
        metadata=_flag(
            "--retry-attempts", "attempts in total (1: no retry)", parse=_at_least(1), metavar="N"
        ),
    )
    retry_backoff_min_seconds: float = field(
        default=1.0,
        metadata=_flag("--retry-backoff-min-seconds", "first backoff (full jitter)", **_SECONDS),
    )
    retry_backoff_max_seconds: float = field(
        default=10.0,
        metadata=_flag("--retry-backoff-max-seconds", "backoff cap; >= the min", **_SECONDS),
    )
    breaker_failure_threshold: int = field(
        default=5,
        metadata=_flag(
            "--breaker-failure-threshold",
            "consecutive failures that open the circuit",
            parse=_at_least(1),
            metavar="N",
        ),
    )
    breaker_open_seconds: float = field(
        default=30.0,
        metadata=_flag("--breaker-open-seconds", "time open before a probe", **_SECONDS),
    )
    prompt_guard: GuardMode = field(
        default="block",
        metadata=_flag("--prompt-guard", "prompt-injection guard mode", choices=GUARD_MODES),
    )
    prompt_guard_extra_patterns: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            "--prompt-guard-extra-pattern",
            "extra regex in RE2 syntax (repeatable)",
            metavar="REGEX",
            repeat=tuple,
        ),
    )
    prompt_guard_outbound: GuardMode = field(
        default="flag",
        metadata=_flag(
            "--prompt-guard-outbound",
            "guard mode for tool results the agent sends to the provider",
            choices=GUARD_MODES,
        ),
    )
    prompt_guard_outbound_roles: frozenset[str] = field(
        default=frozenset(),
        metadata=_flag(
            "--prompt-guard-outbound-role",
            "a message role also screened outbound (repeatable): " + ", ".join(SCREENABLE_ROLES),
            choices=SCREENABLE_ROLES,
            metavar="ROLE",
            repeat=frozenset,
        ),
    )
    max_request_body_bytes: int = field(
        default=DEFAULT_MAX_REQUEST_BODY_BYTES,
        metadata=_flag(
            MAX_REQUEST_BODY_BYTES_FLAG,
            "largest inbound body the guard reads; larger: 413",
            parse=_at_least(1024),
            metavar="N",
        ),
    )
    allow_unmetered: frozenset[str] = field(
        default=frozenset(),
        metadata=_flag(
            ALLOW_UNMETERED_FLAG,
            "an unmetered endpoint to forward anyway (repeatable): "
            + ", ".join(UNMETERED_ENDPOINTS),
            choices=UNMETERED_ENDPOINTS,
            metavar="NAME",
            repeat=frozenset,
        ),
    )
    spend_store: SpendStoreKind = field(
        default="memory",
        metadata=_flag(
            "--spend-store",
            "where spend is kept: memory (this process), kubernetes (SpendRecords "
            "shared by the replicas), redis (URL from the environment)",
            choices=SPEND_STORES,
        ),
    )
    agent_uid: str = field(
        default="",
        metadata=_flag(
            "--agent-uid",
            "uid of the AgentDeployment: owner of the SpendRecords the gateway writes",
            always=False,
        ),
    )
    service_account_dir: Path = field(
        default=Path(SERVICE_ACCOUNT_DIR),
        metadata=_flag(
            "--service-account-dir",
            "projected token, ca.crt (kubernetes spend store)",
            always=False,
            **_DIR,
        ),
    )
    spend_journal_dir: Path | None = field(
        default=None,
        metadata=_flag(
            "--spend-journal-dir",
            "writable dir (emptyDir) keeping spend not yet in the shared ledger across "
            "container restarts; absent: no journal",
            always=False,
            **_DIR,
        ),
    )
    ledger_flush_seconds: float = field(
        default=2.0,
        metadata=_flag(
            "--ledger-flush-seconds",
            "longest time spend stays unwritten to the shared ledger",
            always=False,
            **_SECONDS,
        ),
    )
    otlp_endpoint: str | None = field(
        default=None,
        metadata=_flag(
            "--otlp-endpoint",
            "OTLP/HTTP collector base URL; absent: tracing off",
            metavar="URL",
            always=False,
        ),
    )
    agent: str = field(
        default="agent", metadata=_flag("--agent", "AgentDeployment name, for logs and metrics")
    )
    namespace: str = field(
        default="default", metadata=_flag("--namespace", "its namespace, for logs and metrics")
    )
    # Not rendered by the operator: protection of both doors against slow or
    # numerous clients (docs/gateway.md); tests lower them.
    max_connections: int = field(
        default=1024,
        metadata=_flag(
            "--max-connections",
            "open connections per listener; more are answered 503",
            parse=_at_least(1),
            metavar="N",
            always=False,
        ),
    )
    header_timeout_seconds: float = field(
        default=10.0,
        metadata=_flag(
            "--header-timeout-seconds",
            "time to complete request headers once begun",
            always=False,
            **_SECONDS,
        ),
    )
    body_timeout_seconds: float = field(
        default=30.0,
        metadata=_flag(
            "--body-timeout-seconds",
            "time to read a body whole (408), or between chunks",
            always=False,
            **_SECONDS,
        ),
    )

    def to_argv(self) -> list[str]:
        """The flags, in field order (without GATEWAY_ENTRYPOINT).

        A value starting with "-" is rendered `--flag=value`: argparse would
        take it for an option otherwise.
        """
        argv: list[str] = []
        for f in dataclasses.fields(self):
            flag: _Flag = f.metadata["flag"]
            value = getattr(self, f.name)
            if not flag.always and value == f.default:
                continue
            if flag.repeat is None:
                items = [value]
            else:
                items = sorted(value) if isinstance(value, frozenset) else list(value)
            for item in items:
                text = flag.render(item)
                argv += [f"{flag.name}={text}"] if text.startswith("-") else [flag.name, text]
        return argv


def build_parser() -> argparse.ArgumentParser:
    """The gateway's argparse parser, one option per GatewayArgs field."""
    parser = argparse.ArgumentParser(
        prog=" ".join(GATEWAY_ENTRYPOINT),
        description="The gateway sidecar: callers' door, the agent's LLM door, admin port.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    for f in dataclasses.fields(GatewayArgs):
        flag: _Flag = f.metadata["flag"]
        required = f.default is dataclasses.MISSING
        help_ = flag.help
        if not required and flag.repeat is None and f.default is not None:
            help_ += f" (default: {flag.render(f.default)})"
        parser.add_argument(
            flag.name,
            dest=f.name,
            type=flag.parse,
            choices=flag.choices,
            metavar=flag.metavar,
            required=required,
            action="append" if flag.repeat is not None else "store",
            help=help_.replace("%", "%%"),
        )
    return parser


def parse(argv: Sequence[str]) -> GatewayArgs:
    """Read a command line back into GatewayArgs; exits with status 2 on a bad flag."""
    parser = build_parser()
    ns = vars(parser.parse_args(list(argv)))
    for f in dataclasses.fields(GatewayArgs):
        repeat = f.metadata["flag"].repeat
        if repeat is not None and f.name in ns:
            ns[f.name] = repeat(ns[f.name])
    args = GatewayArgs(**ns)
    if args.retry_backoff_max_seconds < args.retry_backoff_min_seconds:
        parser.error("--retry-backoff-max-seconds must be >= --retry-backoff-min-seconds")
    return args
