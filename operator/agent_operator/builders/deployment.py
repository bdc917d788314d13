"""Deployment X: the agent container plus the gateway sidecar.

Only the gateway mounts key material and the budget, as whole volumes (no
subPath) so Kubernetes swaps the files in place and nothing restarts. The
two containers share no writable volume. The pod runs as ServiceAccount
X-gateway (builders/rbac.py) without the automatic token: only the gateway
container gets a projected, expiring token of that identity, for the spend
ledger; the agent container holds no Kubernetes API credential. The
gateway's configuration is its command line, which is part of the pod
template already: a change rolls the pods without a config-hash annotation.
Ports, volume names, mount paths and the flags are the sidecar contract
(`agent_operator.sidecar`), shared with the gateway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from agent_operator.api import AgentDeployment, ResourceRequirements
from agent_operator.builders.labels import (
    budget_name,
    client_keys_name,
    credentials_name,
    labels,
    metadata,
    selector,
)
from agent_operator.builders.options import BuildOptions
from agent_operator.ledger import gateway_identity
from agent_operator.sidecar import (
    ADMIN_PORT,
    BUDGET_DIR,
    BUDGET_VOLUME,
    CLIENT_KEYS_DIR,
    CLIENT_KEYS_VOLUME,
    CREDENTIALS_DIR,
    CREDENTIALS_VOLUME,
    GATEWAY_ENTRYPOINT,
    HEALTHZ_PATH,
    INBOUND_PORT,
    METRICS_PATH,
    OUTBOUND_PORT,
    POD_NAME_ENV,
    POD_UID_ENV,
    READYZ_PATH,
    REDIS_URL_ENV,
    SERVICE_ACCOUNT_DIR,
    SERVICE_ACCOUNT_VOLUME,
    SPEND_JOURNAL_DIR,
    SPEND_JOURNAL_VOLUME,
    TOKEN_EXPIRATION_SECONDS,
    GatewayArgs,
    SpendStoreKind,
)

KEY_PLACEHOLDER: Final = "injected-by-gateway"
# /tmp of each container (the root filesystems are read-only); the gateway
# never reads them, so they are the pod's business, not the sidecar contract.
AGENT_TMP: Final = "agent-tmp"
GATEWAY_TMP: Final = "gateway-tmp"
# Metrics are scraped from the pods' admin port, never through the Service.
SCRAPE_ANNOTATIONS: Final = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(ADMIN_PORT),
    "prometheus.io/path": METRICS_PATH,
}
# Non-root user of the gateway image; explicit so runAsNonRoot holds for any build.
GATEWAY_UID: Final = 65532
DEFAULT_GATEWAY_RESOURCES: Final[dict[str, Any]] = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}


def spend_store(agd: AgentDeployment) -> SpendStoreKind:
    """Where the gateway keeps spend: spec.budget.store, or memory without a limit to share."""
    budget = agd.spec.budget
    if budget is not None and budget.store == "redis":
        return "redis"
    if budget is not None and budget.limits:
        return "kubernetes"
    return "memory"


def gateway_args(agd: AgentDeployment) -> GatewayArgs:
    """The sidecar's settings for `agd`; listen addresses and limits not set here
    keep GatewayArgs' defaults, which are the pod's."""
    spec = agd.spec
    gw = spec.gateway
    return GatewayArgs(
        provider=spec.model.provider,
        upstream_url=spec.model.upstream_url,
        agent_url=f"http://127.0.0.1:{spec.port}",
        credentials_dir=Path(CREDENTIALS_DIR),
        client_keys_dir=Path(CLIENT_KEYS_DIR) if spec.client_auth.enabled else None,
        budget_dir=Path(BUDGET_DIR),
        timeout_seconds=gw.timeout_seconds,
        retry_attempts=gw.retries.attempts,
        retry_backoff_min_seconds=gw.retries.backoff_min,
        retry_backoff_max_seconds=gw.retries.backoff_max,
        breaker_failure_threshold=gw.circuit_breaker.failure_threshold,
        breaker_open_seconds=gw.circuit_breaker.open_seconds,
        prompt_guard=gw.prompt_guard.mode,
        prompt_guard_extra_patterns=tuple(gw.prompt_guard.extra_patterns),
        prompt_guard_outbound=gw.prompt_guard.outbound,
        prompt_guard_outbound_roles=frozenset(gw.prompt_guard.outbound_roles),
        max_request_body_bytes=gw.max_request_body_bytes,
        allow_unmetered=frozenset(gw.allow_unmetered_endpoints),
        spend_store=spend_store(agd),
        agent_uid=agd.metadata.uid,
        service_account_dir=Path(SERVICE_ACCOUNT_DIR),
        spend_journal_dir=Path(SPEND_JOURNAL_DIR),
        otlp_endpoint=spec.telemetry.otlp_endpoint or None,
        agent=agd.name,
        namespace=agd.namespace,
    )


def gateway_command(agd: AgentDeployment) -> list[str]:
    """The sidecar's command line, as docs/architecture.md shows it."""
    return [*GATEWAY_ENTRYPOINT, *gateway_args(agd).to_argv()]


def agent_env(agd: AgentDeployment) -> list[dict[str, Any]]:
    """The agent's environment: the gateway as its LLM endpoint, never a provider key."""
    model = agd.spec.model
    if model.provider == "anthropic":
        env = [
            {"name": "ANTHROPIC_BASE_URL", "value": f"http://127.0.0.1:{OUTBOUND_PORT}"},
            {"name": "ANTHROPIC_API_KEY", "value": KEY_PLACEHOLDER},
        ]
    else:
        env = [
            {"name": "OPENAI_BASE_URL", "value": f"http://127.0.0.1:{OUTBOUND_PORT}/v1"},
            {"name": "OPENAI_API_KEY", "value": KEY_PLACEHOLDER},
        ]
    if model.default:
        env.append({"name": "AGENT_MODEL", "value": model.default})
    if model.tiers:
        for tier, name in model.tiers.model_dump(exclude_none=True).items():
            env.append({"name": f"AGENT_MODEL_{tier.upper()}", "value": name})
    # User variables last, so they can refer to ours with $(VAR).
    env += [e.model_dump(by_alias=True, exclude_none=True) for e in agd.spec.env]
    return env


def _security_context(run_as_user: int | None = None) -> dict[str, Any]:
    """Pod Security Standard "restricted", on every container."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as_user is not None:
        context["runAsUser"] = run_as_user
        context["runAsGroup"] = run_as_user
    return context


def _http_probe(path: str, port: int, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _resources(resources: ResourceRequirements | None) -> dict[str, Any] | None:
    return resources.model_dump(exclude_none=True) if resources else None


def agent_container(agd: AgentDeployment) -> dict[str, Any]:
    """The user's agent: no key material, only its own /tmp mounted."""
    spec = agd.spec
    container: dict[str, Any] = {
        "name": "agent",
        "image": spec.image,
        "env": agent_env(agd),
        # Slow starters (model downloads) get 5 minutes before liveness counts.
        "startupProbe": _http_probe(spec.health_path, spec.port, period=5, failures=60),
        "livenessProbe": _http_probe(spec.health_path, spec.port, period=10, failures=3),
        "readinessProbe": _http_probe(spec.health_path, spec.port, period=5, failures=3),
        "securityContext": _security_context(),
        "volumeMounts": [{"name": AGENT_TMP, "mountPath": "/tmp"}],
    }
    resources = _resources(spec.resources)
    if resources:
        container["resources"] = resources
    return container


def gateway_env(agd: AgentDeployment) -> list[dict[str, Any]]:
    """The pod's name and uid (its spend records carry them); the Redis URL for store redis."""
    env: list[dict[str, Any]] = [
        {"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": POD_UID_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]
    budget = agd.spec.budget
    if budget is not None and budget.store == "redis" and budget.redis is not None:
        ref = budget.redis.url_secret_ref
        # env, not argv: the URL carries a password, and argv is readable in /proc
        env.append(
            {
                "name": REDIS_URL_ENV,
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    return env


def gateway_container(agd: AgentDeployment, options: BuildOptions) -> dict[str, Any]:
    """The sidecar: the only container that mounts keys, the budget and an API token."""
    mounts = [{"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR, "readOnly": True}]
    if agd.spec.client_auth.enabled:
        mounts.append({"name": CLIENT_KEYS_VOLUME, "mountPath": CLIENT_KEYS_DIR, "readOnly": True})
    mounts += [
        {"name": BUDGET_VOLUME, "mountPath": BUDGET_DIR, "readOnly": True},
        {"name": SERVICE_ACCOUNT_VOLUME, "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": True},
        {"name": SPEND_JOURNAL_VOLUME, "mountPath": SPEND_JOURNAL_DIR},
        {"name": GATEWAY_TMP, "mountPath": "/tmp"},
    ]
    return {
        "name": "gateway",
        "image": options.gateway_image,
        "imagePullPolicy": options.gateway_image_pull_policy,
        "command": gateway_command(agd),
        "env": gateway_env(agd),
        "ports": [
            {"name": "http", "containerPort": INBOUND_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": _http_probe(HEALTHZ_PATH, ADMIN_PORT, period=10, failures=3),
        "readinessProbe": _http_probe(READYZ_PATH, ADMIN_PORT, period=5, failures=3),
        "resources": _resources(agd.spec.gateway.resources) or DEFAULT_GATEWAY_RESOURCES,
        "securityContext": _security_context(run_as_user=GATEWAY_UID),
        "volumeMounts": mounts,
    }


def service_account_volume() -> dict[str, Any]:
    """What the kubelet would automount (token, ca.crt, namespace), as a volume of
    our own so that only the gateway container mounts it."""
    return {
        "name": SERVICE_ACCOUNT_VOLUME,
        "projected": {
            "sources": [
                # Bound to the pod (the admission policy reads the pod's uid
                # from it) and rotated by the kubelet before it expires.
                {
                    "serviceAccountToken": {
                        "path": "token",
                        "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                    }
                },
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ]
        },
    }


def volumes(agd: AgentDeployment) -> list[dict[str, Any]]:
    """Pod volumes named as docs/architecture.md fixes them."""
    result: list[dict[str, Any]] = [
        {"name": CREDENTIALS_VOLUME, "secret": {"secretName": credentials_name(agd)}}
    ]
    if agd.spec.client_auth.enabled:
        result.append({"name": CLIENT_KEYS_VOLUME, "secret": {"secretName": client_keys_name(agd)}})
    result += [
        {"name": BUDGET_VOLUME, "configMap": {"name": budget_name(agd)}},
        service_account_volume(),
        # One each: a shared writable volume would let the agent plant files
        # the gateway reads (or the reverse).
        {"name": AGENT_TMP, "emptyDir": {}},
        {"name": GATEWAY_TMP, "emptyDir": {}},
        # the gateway's spend not yet in the ledger: outlives a container restart
        {"name": SPEND_JOURNAL_VOLUME, "emptyDir": {}},
    ]
    return result


def deployment(agd: AgentDeployment, options: BuildOptions) -> dict[str, Any]:
    """Deployment X; without `replicas` when an HPA owns the count."""
    spec: dict[str, Any] = {}
    if agd.spec.autoscaling is None:
        spec["replicas"] = 1 if agd.spec.replicas is None else agd.spec.replicas
    spec.update(
        {
            "selector": {"matchLabels": selector(agd)},
            # Never below the desired count while a new version rolls out.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": labels(agd),
                    "annotations": {
                        "kubectl.kubernetes.io/default-container": "agent",
                        **SCRAPE_ANNOTATIONS,
                    },
                },
                "spec": {
                    "serviceAccountName": gateway_identity(agd.name),
                    # The automatic token would reach the agent container too;
                    # the gateway mounts its own (service_account_volume).
                    "automountServiceAccountToken": False,
                    # The agent needs no service-discovery variables; they only
                    # grow its environment with every Service in the namespace.
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [agent_container(agd), gateway_container(agd, options)],
                    "volumes": volumes(agd),
                },
            },
        }
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(agd, agd.name),
        "spec": spec,
    }
