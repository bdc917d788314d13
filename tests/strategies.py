"""Hypothesis strategies for AgentDeployment manifests that the CRD accepts.

They encode the CRD's rules; the unit property tests build children from them
and the e2e fuzz test mutates them into hostile specs.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from agent_operator.api import RESERVED_ENV
from agent_operator.sidecar import GATEWAY_PORTS

names = st.from_regex(r"[a-z]([-a-z0-9]{0,49}[a-z0-9])?", fullmatch=True)
namespaces = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
models = st.from_regex(r"[a-z0-9][-a-z0-9.:/]{0,30}", fullmatch=True)
quantities = st.sampled_from(["100m", "250m", "1", 2, "64Mi", "1Gi", "1.5", "500M"])
urls = st.sampled_from(
    [
        "https://api.example.com/v1",
        "http://vllm.models:8000/v1",
        "https://example.openai.azure.com/openai",
    ]
)
money = st.floats(min_value=0, max_value=1000, allow_nan=False).map(lambda x: round(x, 4))


@st.composite
def durations(draw: st.DrawFn) -> tuple[str, str]:
    """(every, gracePeriod) with 2m <= gracePeriod < every."""
    every_minutes = draw(st.integers(3, 60 * 24 * 90))
    grace_seconds = draw(st.integers(120, every_minutes * 60 - 1))
    every = draw(st.sampled_from([f"{every_minutes}m", f"{every_minutes * 60}s"]))
    grace = f"{grace_seconds}s" if grace_seconds % 60 else f"{grace_seconds // 60}m"
    return every, grace


def rotation() -> st.SearchStrategy[dict[str, str]]:
    return durations().map(lambda d: {"every": d[0], "gracePeriod": d[1]})


resources = st.fixed_dictionaries(
    {},
    optional={
        "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantities, max_size=2),
        "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantities, max_size=2),
    },
)
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True).filter(
    lambda n: n not in RESERVED_ENV
)
env_vars = st.lists(
    st.one_of(
        st.builds(lambda n, v: {"name": n, "value": v}, env_names, st.text(max_size=20)),
        st.builds(
            lambda n: {"name": n, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            env_names,
        ),
    ),
    max_size=4,
    unique_by=lambda e: e["name"],
)


@st.composite
def model_specs(draw: st.DrawFn) -> dict[str, Any]:
    provider = draw(st.sampled_from(["openai", "anthropic", "azure-openai", "openai-compatible"]))
    model: dict[str, Any] = {"provider": provider}
    if provider in ("azure-openai", "openai-compatible") or draw(st.booleans()):
        model["baseURL"] = draw(urls)
    if draw(st.booleans()):
        model["default"] = draw(models)
    if draw(st.booleans()):
        model["tiers"] = draw(
            st.dictionaries(st.sampled_from(["simple", "medium", "complex"]), models)
        )
    return model


@st.composite
def issuers(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["static", "openai", "generated"]))
    issuer: dict[str, Any] = {"type": kind}
    if kind != "generated":
        issuer["secretRef"] = {"name": draw(names)}
        if draw(st.booleans()):
            issuer["secretRef"]["key"] = draw(st.sampled_from(["apiKey", "key.txt", "ADMIN_KEY"]))
    if kind == "openai":
        issuer["projectID"] = draw(st.from_regex(r"proj_[A-Za-z0-9]{1,10}", fullmatch=True))
    return issuer


@st.composite
def budgets(draw: st.DrawFn) -> dict[str, Any]:
    periods = draw(
        st.lists(st.sampled_from(["hour", "day", "week", "month"]), unique=True, max_size=4)
    )
    thresholds = sorted(draw(st.sets(st.integers(1, 100), max_size=10)))
    budget: dict[str, Any] = {
        "limits": [{"period": p, "maxUSD": draw(st.floats(0.01, 1e6))} for p in periods],
        "alertThresholds": [t / 100 for t in thresholds],
        "onExhausted": draw(st.sampled_from(["reject", "downgrade"])),
    }
    if budget["onExhausted"] == "downgrade" or draw(st.booleans()):
        budget["downgradeModel"] = draw(models)
    budget["prices"] = draw(
        st.dictionaries(
            models, st.fixed_dictionaries({"input": money, "output": money}), max_size=3
        )
    )
    if draw(st.booleans()):
        budget["unknownModelPrice"] = {"input": draw(money), "output": draw(money)}
    if draw(st.booleans()):
        budget["store"] = draw(st.sampled_from(["kubernetes", "redis"]))
    if budget.get("store") == "redis" or draw(st.booleans()):
        ref = {"name": draw(names)} | draw(st.sampled_from([{}, {"key": "redis-url"}]))
        budget["redis"] = {"urlSecretRef": ref}
    return budget


@st.composite
def gateways(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.floats(0.01, 300))
    return {
        "timeoutSeconds": draw(st.floats(0.1, 3600)),
        "retries": {
            "attempts": draw(st.integers(1, 10)),
            "backoffMinSeconds": low,
            "backoffMaxSeconds": draw(st.floats(low, 300)),
        },
        "circuitBreaker": {
            "failureThreshold": draw(st.integers(1, 1000)),
            "openSeconds": draw(st.floats(0.5, 3600)),
        },
        "promptGuard": {
            "mode": draw(st.sampled_from(["block", "flag", "off"])),
            "outbound": draw(st.sampled_from(["block", "flag", "off"])),
            "outboundRoles": draw(
                st.lists(st.sampled_from(["user", "assistant", "system", "developer"]), unique=True)
            ),
            "extraPatterns": draw(
                st.lists(
                    st.sampled_from(
                        ["(?i)ignore previous", "-{3,}", r"\bDAN\b", "sys(tem)? prompt"]
                    ),
                    max_size=3,
                )
            ),
        },
    }


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": draw(
            st.from_regex(r"[a-z0-9][a-z0-9./-]{0,30}(:[a-z0-9.]{1,8})?", fullmatch=True)
        ),
        "credentials": {"issuer": draw(issuers())},
    }
    optional = {
        "port": st.integers(1, 65535).filter(lambda p: p not in GATEWAY_PORTS),
        "healthPath": st.from_regex(r"/[a-z0-9/_-]{0,20}", fullmatch=True),
        "env": env_vars,
        "resources": resources,
        "model": model_specs(),
        "clientAuth": st.fixed_dictionaries(
            {"enabled": st.booleans()}, optional={"rotation": rotation()}
        ),
        "budget": budgets(),
        "gateway": gateways().map(lambda g: g | {"resources": {"requests": {"cpu": "10m"}}}),
        "telemetry": st.sampled_from(
            [{}, {"otlpEndpoint": ""}, {"otlpEndpoint": "http://collector:4318"}]
        ),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            spec[key] = draw(strategy)
    if draw(st.booleans()):
        spec["credentials"]["rotation"] = draw(rotation())
    scaling = draw(st.sampled_from(["none", "replicas", "autoscaling"]))
    if scaling == "replicas":
        spec["replicas"] = draw(st.integers(0, 1000))
    elif scaling == "autoscaling":
        low = draw(st.integers(1, 1000))
        spec["autoscaling"] = {
            "minReplicas": low,
            "maxReplicas": draw(st.integers(low, 1000)),
            "targetCPUUtilizationPercentage": draw(st.integers(1, 1000)),
        }
        if draw(st.booleans()):
            spec["autoscaling"]["targetInflightRequests"] = draw(st.integers(1, 10_000))
    return {
        "apiVersion": "agents.dev/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": {
            "name": draw(names),
            "namespace": draw(namespaces),
            "uid": "6f1f7c4e-2d2b-4a8e-9a43-51c0d7c0a001",
        },
        "spec": spec,
    }
