"""The AgentDeployment API (agents.dev/v1alpha1): the single source of truth.

Field docstrings become the CRD's descriptions and `crd.py` generates the
schema from these models. A cross-field rule is written once as a `Rule`:
its CEL expression runs in the API server, its Python twin in
`AgentDeployment.from_body`, so `agent-operator render` refuses offline
exactly what the server refuses.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal

import re2
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from agent_operator.sidecar import (
    DEFAULT_MAX_REQUEST_BODY_BYTES,
    DEFAULT_UNKNOWN_MODEL_PRICE,
    GATEWAY_PORTS,
    SCREENABLE_ROLES,
    UNMETERED_ENDPOINTS,
    BudgetPeriod,
    GuardMode,
    OnExhausted,
    Provider,
    ScreenableRole,
)

GROUP: Final = "agents.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "AgentDeployment"
PLURAL: Final = "agentdeployments"
# A Secret's keys may be copied by a static issuer only when the Secret carries
# this label with the value "true": whoever may create an AgentDeployment must
# not be able to read any other Secret of the namespace through it.
ISSUER_SOURCE_LABEL: Final = f"{GROUP}/issuer-source"
# On an admin-key Secret: the Admin API base URLs (comma-separated) its key may be
# sent to; without it only DEFAULT_ADMIN_BASE_URL. The Secret's owner decides.
ADMIN_URLS_ANNOTATION: Final = f"{GROUP}/admin-base-urls"
DEFAULT_ADMIN_BASE_URL: Final = "https://api.openai.com/v1"

# `X-client-keys` (X + 12 characters) must stay a DNS-1123 label (<= 63), and
# the Service name X must be a DNS-1035 label (starts with a letter).
MAX_NAME_LENGTH: Final = 51
NAME_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# "8080, 8081 or 9090", for messages
_GATEWAY_PORTS_TEXT: Final = ", ".join(map(str, GATEWAY_PORTS[:-1])) + f" or {GATEWAY_PORTS[-1]}"
# Set on the agent container by the operator; a user value would point the
# agent past the gateway or hand it a provider key.
RESERVED_ENV: Final = (
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "AGENT_MODEL",
    "AGENT_MODEL_SIMPLE",
    "AGENT_MODEL_MEDIUM",
    "AGENT_MODEL_COMPLEX",
)
MAX_MODEL_NAME_LENGTH: Final = 256
# An env value may be the size of a small file, but all of them together must
# leave the Deployment (which carries them) far below the ~1.5 MiB etcd stores
# per object; exec() would refuse an environment past 2 MiB anyway.
MAX_ENV_VALUE_LENGTH: Final = 32 * 1024
MAX_ENV_BYTES: Final = 512 * 1024
MAX_REQUEST_BODY_BYTES_LIMIT: Final = 64 * 1024 * 1024

# Go duration strings (time.ParseDuration, which CEL's duration() uses).
DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_DURATION_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# resource.Quantity, as controller-gen renders it.
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def duration_seconds(value: str) -> float:
    """Seconds in a Go duration string such as `720h` or `1h30m`."""
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(value))


class InvalidSpec(ValueError):
    """An AgentDeployment the API server would refuse; `errors` are `path: message` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: CEL for the API server, `check` for offline validation."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None  # relative, e.g. ".maxReplicas"

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


class _Model(BaseModel):
    """Base of spec objects: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> _Model:
        for rule in self.rules:
            if not rule.check(self):
                raise PydanticCustomError(
                    "rule", "{message}", {"message": rule.message, "field": rule.field_path or ""}
                )
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        target = handler.resolve_ref_schema(json_schema)
        if cls.rules:
            target["x-kubernetes-validations"] = [r.to_schema() for r in cls.rules]
        return json_schema


def _quantity(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    Field(pattern=QUANTITY_PATTERN),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
DNSName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]
URL = Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s]+$")]
ModelName = Annotated[str, Field(min_length=1, max_length=MAX_MODEL_NAME_LENGTH)]


# --- the agent container -----------------------------------------------------


class EnvVar(_Model):
    """A core/v1 EnvVar, passed through to the agent container."""

    name: str = Field(max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    """Variable name; the operator's own (OPENAI_BASE_URL, ...) are refused."""
    value: str | None = Field(None, max_length=MAX_ENV_VALUE_LENGTH)
    """Literal value."""
    value_from: dict[str, Any] | None = Field(None, alias="valueFrom")
    """core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, ...). The
    Deployment resolves it with the pods' rights: any Secret or ConfigMap of the
    namespace can be put into the agent's environment this way."""


class ResourceRequirements(_Model):
    """core/v1 ResourceRequirements: quantities by resource name."""

    limits: dict[str, Quantity] | None = None
    """Maximum amount of compute resources allowed."""
    requests: dict[str, Quantity] | None = None
    """Minimum amount of compute resources required (CPU autoscaling needs cpu)."""


class Autoscaling(_Model):
    """Present: a HorizontalPodAutoscaler (autoscaling/v2) owns the replica count."""

    rules = (
        Rule(
            "self.maxReplicas >= self.minReplicas",
            "must be >= minReplicas",
            lambda s: s.max_replicas >= s.min_replicas,
            ".maxReplicas",
        ),
    )
    min_replicas: int = Field(1, ge=1, le=1000, alias="minReplicas")
    """Lower bound of the replica count."""
    max_replicas: int = Field(ge=1, le=1000, alias="maxReplicas")
    """Upper bound of the replica count; must be >= minReplicas."""
    target_cpu: int = Field(80, ge=1, le=1000, alias="targetCPUUtilizationPercentage")
    """Average CPU utilisation of the pods, in percent of their CPU requests."""
    target_inflight: int | None = Field(None, ge=1, alias="targetInflightRequests")
    """Optional target of in-flight requests per pod (Pods metric
    agent_gateway_inflight_requests; needs a custom-metrics adapter)."""


# --- the model provider ------------------------------------------------------

DEFAULT_BASE_URLS: Final[dict[str, str]] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


class Tiers(_Model):
    """Models by task complexity; the agent reads them from AGENT_MODEL_<TIER>."""

    simple: ModelName | None = None
    """Model for simple tasks."""
    medium: ModelName | None = None
    """Model for medium tasks."""
    complex: ModelName | None = None
    """Model for complex tasks."""


class ModelSpec(_Model):
    """The LLM provider the gateway forwards the agent's calls to."""

    rules = (
        Rule(
            "self.provider in ['openai', 'anthropic'] || has(self.baseURL)",
            "is required when provider is azure-openai or openai-compatible",
            lambda s: s.provider in DEFAULT_BASE_URLS or s.base_url is not None,
            ".baseURL",
        ),
    )
    provider: Provider = "openai"
    """Wire protocol and default upstream: openai | anthropic | azure-openai | openai-compatible."""
    base_url: URL | None = Field(None, alias="baseURL")
    """Upstream URL. Defaults: https://api.openai.com/v1 (openai),
    https://api.anthropic.com (anthropic); required for the other providers."""
    default: ModelName | None = None
    """Model the agent should use by default (env AGENT_MODEL of the agent)."""
    tiers: Tiers | None = None
    """Optional models by complexity (env AGENT_MODEL_SIMPLE/MEDIUM/COMPLEX)."""

    @property
    def upstream_url(self) -> str:
        """spec.model.baseURL, or the provider's public endpoint."""
        return self.base_url or DEFAULT_BASE_URLS[self.provider]


# --- keys ---------------------------------------------------------------------


class SecretKeyRef(_Model):
    """A key of a Secret in the AgentDeployment's namespace."""

    name: DNSName
    """Secret name."""
    key: str = Field("apiKey", max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key inside the Secret."""


class Issuer(_Model):
    """Where upstream keys come from."""

    rules = (
        Rule(
            "self.type == 'generated' || has(self.secretRef)",
            "is required when type is static or openai",
            lambda s: s.type == "generated" or s.secret_ref is not None,
            ".secretRef",
        ),
        Rule(
            "self.type != 'openai' || has(self.projectID)",
            "is required when type is openai",
            lambda s: s.type != "openai" or s.project_id is not None,
            ".projectID",
        ),
    )
    type: Literal["static", "openai", "generated"]
    """static: copied from secretRef (a change of the source is a rotation);
    openai: a project service-account key minted with the OpenAI Admin API
    (secretRef holds the admin key); generated: random keys, for upstreams
    that accept any key."""
    secret_ref: SecretKeyRef | None = Field(None, alias="secretRef")
    """Source key (static) or admin key (openai); required for both. A static
    source Secret must opt in with the label agents.dev/issuer-source: "true"."""
    project_id: str | None = Field(None, min_length=1, max_length=128, alias="projectID")
    """OpenAI project the keys are minted in; required for type openai."""
    admin_base_url: URL = Field(DEFAULT_ADMIN_BASE_URL, alias="adminBaseURL")
    """Base URL of the OpenAI Admin API (type openai): the service accounts of
    projectID are created and deleted under it. Another URL than the default
    must be listed by the admin-key Secret's annotation agents.dev/admin-base-urls."""


class Rotation(_Model):
    """Key rotation schedule (Go durations, e.g. 720h, 30m)."""

    rules = (
        Rule(
            "duration(self.every) >= duration('1m')",
            "must be at least 1m",
            lambda s: duration_seconds(s.every) >= 60,
            ".every",
        ),
        Rule(
            "duration(self.gracePeriod) >= duration('2m')",
            "must be at least 2m: the kubelet takes up to about a minute plus its cache "
            "TTL to deliver a rotated Secret to the pods, which use the previous key meanwhile",
            lambda s: duration_seconds(s.grace_period) >= 120,
            ".gracePeriod",
        ),
        Rule(
            "duration(self.gracePeriod) < duration(self.every)",
            "must be shorter than every",
            lambda s: duration_seconds(s.grace_period) < duration_seconds(s.every),
            ".gracePeriod",
        ),
    )
    every: Duration = "720h"
    """Time between scheduled rotations."""
    grace_period: Duration = Field("24h", alias="gracePeriod")
    """How long the previous key stays valid after a rotation (then it is revoked);
    at least 2m, shorter than every. A rotation asked for meanwhile waits for it."""


class ClientKeyRotation(Rotation):
    """Client key rotation schedule (Go durations, e.g. 168h, 30m)."""

    every: Duration = "168h"
    """Time between scheduled rotations."""


class Credentials(_Model):
    """Upstream LLM keys; only the gateway ever holds them."""

    issuer: Issuer
    """Who issues the keys."""
    rotation: Rotation = Rotation()
    """When keys rotate."""


class ClientAuth(_Model):
    """Keys that callers of the agent must present (generated by the operator)."""

    enabled: bool = False
    """Require `Authorization: Bearer <key>` on inbound requests."""
    rotation: ClientKeyRotation = ClientKeyRotation()
    """When client keys rotate."""


# --- budget -------------------------------------------------------------------


class Price(_Model):
    """USD per 1M tokens."""

    input: float = Field(ge=0)
    """USD per 1M input (prompt) tokens."""
    output: float = Field(ge=0)
    """USD per 1M output (completion) tokens."""


class Limit(_Model):
    """A spend limit per calendar period (UTC)."""

    period: BudgetPeriod
    """Calendar period (UTC): hour, day, week (from Monday) or month."""
    max_usd: float = Field(gt=0, alias="maxUSD")
    """Spend limit in USD for the period."""


Threshold = Annotated[float, Field(gt=0, le=1)]


class RedisURLRef(SecretKeyRef):
    """A key of a Secret in the AgentDeployment's namespace holding a Redis URL."""

    key: str = Field("url", max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key inside the Secret."""


class RedisStore(_Model):
    """The Redis server that holds the shared spend (store redis)."""

    url_secret_ref: RedisURLRef = Field(alias="urlSecretRef")
    """Secret key holding a redis:// or rediss:// URL, password included; only
    the gateway container gets it (as an environment variable)."""


def _ascending(values: list[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


class Budget(_Model):
    """Spend limits the gateway enforces, shared by all replicas."""

    rules = (
        Rule(
            "self.onExhausted != 'downgrade' || has(self.downgradeModel)",
            "is required when onExhausted is downgrade",
            lambda s: s.on_exhausted != "downgrade" or s.downgrade_model is not None,
            ".downgradeModel",
        ),
        Rule(
            "self.alertThresholds.isSorted()",
            "must be in ascending order",
            lambda s: _ascending(s.alert_thresholds),
            ".alertThresholds",
        ),
        # The map's keys have no schema of their own; unbounded, they could
        # push the ConfigMap X-budget past the API server's size limit.
        Rule(
            f"self.prices.all(m, size(m) >= 1 && size(m) <= {MAX_MODEL_NAME_LENGTH})",
            f"model names must be 1 to {MAX_MODEL_NAME_LENGTH} characters long",
            lambda s: all(1 <= len(m) <= MAX_MODEL_NAME_LENGTH for m in s.prices),
            ".prices",
        ),
        Rule(
            "self.store != 'redis' || has(self.redis)",
            "is required when store is redis",
            lambda s: s.store != "redis" or s.redis is not None,
            ".redis",
        ),
    )
    limits: list[Limit] = Field(
        [],
        max_length=4,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["period"],
        },
    )
    """At most one limit per period."""
    alert_thresholds: list[Threshold] = Field(
        [0.5, 0.8, 0.95],
        max_length=10,
        alias="alertThresholds",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """Fractions of a limit, each in (0, 1], ascending, at which an alert fires."""
    on_exhausted: OnExhausted = Field("reject", alias="onExhausted")
    """reject: answer 429; downgrade: rewrite the request to downgradeModel."""
    downgrade_model: ModelName | None = Field(None, alias="downgradeModel")
    """Cheaper model used once a limit is reached; required for downgrade."""
    prices: dict[str, Price] = Field({}, max_length=256)
    """Prices by model name (1 to 256 characters), merged over the built-in
    table (these win)."""
    unknown_model_price: Price = Field(
        Price(input=DEFAULT_UNKNOWN_MODEL_PRICE[0], output=DEFAULT_UNKNOWN_MODEL_PRICE[1]),
        alias="unknownModelPrice",
    )
    """Charged for a model in neither table; default input 15, output 60
    (expensive on purpose, so unpriced models exhaust a budget early)."""
    store: Literal["kubernetes", "redis"] = "kubernetes"
    """Where the replicas share their spend: kubernetes (SpendRecords on the API
    server; the default, nothing else to run) or redis (strict enforcement at
    high request rates); see docs/budget.md."""
    redis: RedisStore | None = None
    """The Redis server; required when store is redis."""

    @field_validator("limits")
    @classmethod
    def _one_limit_per_period(cls, limits: list[Limit]) -> list[Limit]:
        periods = [limit.period for limit in limits]
        for i, period in enumerate(periods):
            if period in periods[:i]:
                raise PydanticCustomError(
                    "rule",
                    "{message}",
                    {"message": f"duplicate period {period!r}", "field": f"[{i}].period"},
                )
        return limits


# --- gateway and telemetry ---------------------------------------------------


class Retries(_Model):
    """Retries of upstream calls on 429, 5xx and connection errors."""

    rules = (
        Rule(
            "self.backoffMaxSeconds >= self.backoffMinSeconds",
            "must be >= backoffMinSeconds",
            lambda s: s.backoff_max >= s.backoff_min,
            ".backoffMaxSeconds",
        ),
    )
    attempts: int = Field(3, ge=1, le=10)
    """Total attempts per call, the first included."""
    backoff_min: float = Field(1.0, gt=0, le=300, alias="backoffMinSeconds")
    """First backoff in seconds (exponential, with jitter)."""
    backoff_max: float = Field(10.0, gt=0, le=300, alias="backoffMaxSeconds")
    """Backoff cap in seconds."""


class CircuitBreaker(_Model):
    """Per-upstream circuit breaker."""

    failure_threshold: int = Field(5, ge=1, le=1000, alias="failureThreshold")
    """Consecutive failures that open the circuit."""
    open_seconds: float = Field(30.0, gt=0, le=3600, alias="openSeconds")
    """Seconds the circuit stays open before a trial call."""


INVALID_RE2_MESSAGE: Final = "must be a regular expression in RE2 syntax"
# CEL's matches() compiles its pattern with Go's RE2, and a pattern that does not
# compile is an evaluation error, which refuses the object naming the item. Both
# sides of `||` evaluate the pattern: `error || true` would be true. The result
# itself does not matter. The Python twin is `re2_error`.
RE2_RULE: Final = {
    "rule": '"".matches(self) || !"".matches(self)',
    "message": INVALID_RE2_MESSAGE,
}
_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error comes back as a value; no stderr noise


def _any_byte_escape(pattern: str) -> bool:
    """True when `pattern` uses `\\C` (any byte): google-re2 takes it, Go's RE2 does not."""
    i = 0
    while i < len(pattern) - 1:
        if pattern[i] == "\\":
            if pattern[i + 1] == "C":
                return True
            i += 2
        else:
            i += 1
    return False


def re2_error(pattern: str) -> str | None:
    """Why `pattern` is not RE2 syntax (as the gateway and the API server read it), or None."""
    if _any_byte_escape(pattern):
        return "invalid escape sequence: \\C"
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else ""
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    return None


GuardPattern = Annotated[
    str,
    Field(
        min_length=1, max_length=1024, json_schema_extra={"x-kubernetes-validations": [RE2_RULE]}
    ),
]


def no_duplicates(names: list[str]) -> list[str]:
    """A list that Kubernetes treats as a set (x-kubernetes-list-type: set)."""
    for i, name in enumerate(names):
        if name in names[:i]:
            raise PydanticCustomError(
                "rule", "{message}", {"message": f"duplicate value {name!r}", "field": f"[{i}]"}
            )
    return names


class PromptGuard(_Model):
    """Prompt-injection guard on both doors: what callers send the agent, and
    the tool results the agent sends on to the provider."""

    mode: GuardMode = "block"
    """Inbound request bodies. block: refuse with 400; flag: forward, count
    and log; off."""
    outbound: GuardMode = "flag"
    """Tool and function results in the agent's calls to the provider, where
    text fetched from elsewhere arrives (indirect injection). block: answer
    the agent with a 400 in the provider's error shape naming the rule, the
    provider never sees the call; flag: forward, count and log; off."""
    outbound_roles: list[ScreenableRole] = Field(
        [],
        max_length=len(SCREENABLE_ROLES),
        alias="outboundRoles",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """Message roles screened outbound as well (user, assistant, system,
    developer); tool results always are when outbound is not off."""
    extra_patterns: list[GuardPattern] = Field([], max_length=64, alias="extraPatterns")
    """Extra regular expressions that count as an injection, in RE2 syntax (no
    backreferences or lookaround): matched in linear time, so no pattern can
    stall the gateway."""

    _unique = field_validator("outbound_roles")(no_duplicates)

    @field_validator("extra_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for i, pattern in enumerate(patterns):
            error = re2_error(pattern)
            if error is not None:
                raise PydanticCustomError(
                    "rule",
                    "{message}",
                    {"message": f"{INVALID_RE2_MESSAGE}: {error}", "field": f"[{i}]"},
                )
        return patterns


def _unmetered_endpoint(value: str) -> str:
    if value not in UNMETERED_ENDPOINTS:
        raise PydanticCustomError(
            "enum", "must be one of {expected}", {"expected": ", ".join(UNMETERED_ENDPOINTS)}
        )
    return value


UnmeteredEndpoint = Annotated[
    str,
    AfterValidator(_unmetered_endpoint),
    WithJsonSchema({"type": "string", "enum": list(UNMETERED_ENDPOINTS)}),
]


class Gateway(_Model):
    """The gateway sidecar."""

    timeout_seconds: float = Field(30.0, gt=0, le=3600, alias="timeoutSeconds")
    """Timeout of one upstream attempt, in seconds."""
    retries: Retries = Retries()
    """Retry policy."""
    circuit_breaker: CircuitBreaker = Field(CircuitBreaker(), alias="circuitBreaker")
    """Circuit breaker policy."""
    prompt_guard: PromptGuard = Field(PromptGuard(), alias="promptGuard")
    """Prompt guard policy."""
    allow_unmetered_endpoints: list[UnmeteredEndpoint] = Field(
        [],
        max_length=len(UNMETERED_ENDPOINTS),
        alias="allowUnmeteredEndpoints",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """Endpoints that cost money but whose spend the gateway cannot meter (or
    that mint keys), allowed anyway; by default they are refused with 403.
    `completions` (legacy text completions) is metered once allowed."""
    max_request_body_bytes: int = Field(
        DEFAULT_MAX_REQUEST_BODY_BYTES,
        ge=1024,
        le=MAX_REQUEST_BODY_BYTES_LIMIT,
        alias="maxRequestBodyBytes",
    )
    """Largest inbound request body, in bytes once decoded; larger bodies are
    refused with 413 (read and screened ones before parsing; streamed ones, with
    the guard off, are cut there), so no compression bomb reaches the agent."""
    resources: ResourceRequirements | None = None
    """Resources of the gateway container; default requests cpu 50m, memory 64Mi,
    limits memory 256Mi."""

    _unique = field_validator("allow_unmetered_endpoints")(no_duplicates)


class Telemetry(_Model):
    """Tracing."""

    otlp_endpoint: str = Field(
        "", max_length=2048, pattern=r"^(https?://[^\s]+)?$", alias="otlpEndpoint"
    )
    """OTLP/HTTP endpoint of the gateway's spans; empty: tracing off."""


# --- the spec -----------------------------------------------------------------


class AgentDeploymentSpec(_Model):
    """Desired state of an LLM agent service."""

    rules = (
        Rule(
            "!has(self.replicas) || !has(self.autoscaling)",
            "must not be set together with autoscaling (the HorizontalPodAutoscaler owns it)",
            lambda s: s.replicas is None or s.autoscaling is None,
            ".replicas",
        ),
        Rule(
            f"!(self.port in {list(GATEWAY_PORTS)})",
            f"must not be {_GATEWAY_PORTS_TEXT} (ports of the gateway sidecar)",
            lambda s: s.port not in GATEWAY_PORTS,
            ".port",
        ),
        Rule(
            "self.env.all(e, !(e.name in [" + ", ".join(f"'{n}'" for n in RESERVED_ENV) + "]))",
            "must not set " + ", ".join(RESERVED_ENV) + " (set by the operator)",
            lambda s: all(e.name not in RESERVED_ENV for e in s.env),
            ".env",
        ),
        Rule(
            f"self.env.map(e, has(e.value) ? size(bytes(e.value)) : 0).sum() <= {MAX_ENV_BYTES}",
            f"values must total at most {MAX_ENV_BYTES} bytes (UTF-8)",
            lambda s: sum(len((e.value or "").encode()) for e in s.env) <= MAX_ENV_BYTES,
            ".env",
        ),
    )
    image: str = Field(min_length=1, max_length=1024)
    """Image of the agent container."""
    port: int = Field(8000, ge=1, le=65535)
    """The agent's HTTP port; not 8080, 8081 or 9090 (the gateway's)."""
    health_path: str = Field("/health", max_length=1024, pattern=r"^/", alias="healthPath")
    """HTTP path of the agent's liveness and readiness probes."""
    env: list[EnvVar] = Field([], max_length=256)
    """Environment of the agent container (core/v1 EnvVar), passed through."""
    resources: ResourceRequirements | None = None
    """Resources of the agent container (core/v1 ResourceRequirements)."""
    replicas: int | None = Field(None, ge=0, le=1000)
    """Replica count when autoscaling is absent (default 1); not with autoscaling."""
    autoscaling: Autoscaling | None = None
    """Present: a HorizontalPodAutoscaler owns the replica count."""
    model: ModelSpec = ModelSpec()
    """The LLM provider."""
    credentials: Credentials
    """Upstream LLM keys."""
    client_auth: ClientAuth = Field(ClientAuth(), alias="clientAuth")
    """Keys that callers of the agent must present."""
    budget: Budget | None = None
    """Spend limits; absent: spend is counted and priced, never limited."""
    gateway: Gateway = Gateway()
    """Gateway sidecar behaviour."""
    telemetry: Telemetry = Telemetry()
    """Tracing."""


# --- status -------------------------------------------------------------------


class _Status(BaseModel):
    """Base of status objects: written by the operator, read back leniently."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )


class Condition(_Status):
    """A metav1.Condition."""

    type: str
    """Condition type: Ready, Progressing, Degraded, CredentialsReady, BudgetAvailable."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = ""
    """CamelCase reason, stable, for machines."""
    message: str = ""
    """Human-readable detail."""
    last_transition_time: datetime | None = Field(None, alias="lastTransitionTime")
    """When status last changed."""
    observed_generation: int | None = Field(None, alias="observedGeneration")
    """metadata.generation the condition was computed from."""


class BudgetStatus(_Status):
    """Spend in the current period of the tightest limit."""

    period: str | None = None
    """Period of the limit reported."""
    spent_usd: float | None = Field(None, alias="spentUSD")
    """USD spent in the current period."""
    limit_usd: float | None = Field(None, alias="limitUSD")
    """The limit in USD."""
    remaining_usd: float | None = Field(None, alias="remainingUSD")
    """USD left in the period."""
    exhausted: bool | None = None
    """True once a limit is reached."""
    resets_at: datetime | None = Field(None, alias="resetsAt")
    """When the period ends (UTC)."""


class KeyStatus(_Status):
    """The current key, never its material."""

    key_id: str | None = Field(None, alias="keyID")
    """Non-secret identifier of the current key."""
    rotated_at: datetime | None = Field(None, alias="rotatedAt")
    """When the current key was issued."""
    next_rotation_at: datetime | None = Field(None, alias="nextRotationAt")
    """When the next scheduled rotation is due."""
    previous_expires_at: datetime | None = Field(None, alias="previousExpiresAt")
    """When the previous key stops being accepted."""


Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "BudgetExhausted"]


class AgentDeploymentStatus(_Status):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(None, alias="observedGeneration")
    """metadata.generation last reconciled."""
    phase: Phase | None = None
    """Summary: Pending | Progressing | Ready | Degraded | BudgetExhausted."""
    conditions: list[Condition] = Field(
        [],
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Conditions, the source of truth behind phase."""
    replicas: int | None = None
    """Pods of the Deployment."""
    ready_replicas: int | None = Field(None, alias="readyReplicas")
    """Ready pods of the Deployment."""
    budget: BudgetStatus | None = None
    """Spend of the current period."""
    credentials: KeyStatus | None = None
    """Upstream key."""
    client_keys: KeyStatus | None = Field(None, alias="clientKeys")
    """Client key (when clientAuth is enabled)."""


# --- the whole object ------------------------------------------------------------


NAME_MESSAGE: Final = (
    f"must be at most {MAX_NAME_LENGTH} characters of lowercase letters, digits and '-', "
    "starting with a letter and ending with a letter or digit"
)


class ObjectMeta(BaseModel):
    """The parts of metadata the builders use."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    annotations: dict[str, str] = {}

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        if len(name) > MAX_NAME_LENGTH or not re.fullmatch(NAME_PATTERN, name):
            raise PydanticCustomError("rule", NAME_MESSAGE)
        return name


class AgentDeployment(BaseModel):
    """An AgentDeployment object: metadata, spec and status."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: Literal["agents.dev/v1alpha1"] = Field("agents.dev/v1alpha1", alias="apiVersion")
    kind: Literal["AgentDeployment"] = KIND
    metadata: ObjectMeta
    spec: AgentDeploymentSpec
    status: AgentDeploymentStatus = AgentDeploymentStatus()

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> AgentDeployment:
        """Validate a manifest or a kopf body; raises InvalidSpec naming each bad field.

        A status that does not parse is dropped rather than refused: the
        operator rewrites it, and it must never make a valid spec unusable.
        """
        plain = _plain(body)
        if not isinstance(plain, dict):
            raise InvalidSpec(["<root>: must be a mapping"])
        status = plain.pop("status", None)
        try:
            # Wire names only: `health_path` is as unknown to the API server as `foo`.
            agd = cls.model_validate(plain, by_alias=True, by_name=False)
        except ValidationError as e:
            raise InvalidSpec(format_errors(e)) from None
        try:
            parsed = AgentDeploymentStatus.model_validate(status or {})
        except ValidationError:
            parsed = AgentDeploymentStatus()
        return agd.model_copy(update={"status": parsed})


def _plain(value: Any) -> Any:
    """Deep copy of Mappings and lists (kopf bodies are read-only views) into dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_MESSAGES: Final = {
    "missing": "required value",
    "extra_forbidden": "unknown field",
}
_PATTERN_MESSAGES: Final = {
    QUANTITY_PATTERN: "must be a quantity such as 500m, 2 or 1Gi",
    DURATION_PATTERN: "must be a Go duration such as 720h, 30m or 10s",
}


def format_errors(error: ValidationError) -> list[str]:
    """`spec.autoscaling.maxReplicas: must be >= minReplicas` lines, one per error."""
    lines: list[str] = []
    for err in error.errors(include_url=False):
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        ctx = err.get("ctx") or {}
        field = str(ctx.get("field", ""))
        if field:
            path += field
        message = _MESSAGES.get(err["type"], err["msg"])
        if err["type"] == "string_pattern_mismatch":
            pattern = str(ctx.get("pattern", ""))
            message = _PATTERN_MESSAGES.get(pattern, f"must match {pattern}")
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        lines.append(f"{path or '<root>'}: {message}")
    return lines
