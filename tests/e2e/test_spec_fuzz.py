"""Hostile specs on the real API server (issue 18).

Hypothesis builds AgentDeployments the CRD accepts (tests/strategies.py) and
mutates some of them: huge and odd unicode strings, extreme numbers, wrong
types, deep nesting, unknown fields, required fields removed. Each goes to the
real API server as a client would send it (strict field validation). Every
one must be refused with a message that names the field or the cause, or be
reconciled by the running operator to a Ready condition with a clear reason;
the operator never crashes, never logs a traceback, and reconciles each object
a bounded number of times.

The cases are created in one pass, then checked together: one operator and one
namespace for all of them. Examples are derandomized so CI runs the same cases
every time; AGENT_OPERATOR_FUZZ_CASES changes how many.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from tests.e2e.test_operator import apply, converged, get, manifest, source_secret, wait_for
from tests.strategies import manifests

from localcluster import Cluster

if TYPE_CHECKING:
    from tests.e2e.conftest import OperatorProcess

pytestmark = pytest.mark.e2e

CASES = int(os.environ.get("AGENT_OPERATOR_FUZZ_CASES", "1000"))
GROUP, VERSION, PLURAL = "agents.dev", "v1alpha1", "agentdeployments"


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


ODD_STRINGS = [
    "",
    " ",
    "a" * 1025,
    "a" * 70_000,
    "é" * 600,  # 1,200 bytes: over a 1,024-byte limit, under it in characters
    "\u202etxt.exe",
    "zero\u200bwidth",
    "\x00\x01\x7f",
    "\ud800",  # a lone surrogate: escaped by the client, replaced by the server
    "../../etc/passwd",
    "${jndi:ldap://x}",
    "{{ .Values }}",
    "line\nbreak",
    "http://169.254.169.254/latest",
    "-1",
    "1e400",
    "日本語のテキスト",
    "emoji 😀 beyond U+FFFF",
]
EXTREME_NUMBERS = [0, -1, 2**31, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 1e308, -1e308, 5e-324, 0.5]

hostile_values = st.one_of(
    st.sampled_from(ODD_STRINGS),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=1000, max_size=3000),
    st.sampled_from(EXTREME_NUMBERS),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.sampled_from([[], {}, nested(40), nested(200), {"$ref": "#"}]),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=2),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place below `value` (dict keys and list indexes), parents first."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        found.append((*prefix, key))
        if isinstance(child, dict | list):
            found.extend(paths(child, (*prefix, key)))
    return found


def container(body: dict[str, Any], path: tuple[Any, ...]) -> Any:
    for key in path:
        body = body[key]
    return body


@st.composite
def mutated(draw: st.DrawFn, spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` after one hostile change: a value replaced, a field removed or an
    unknown field added, anywhere in it."""
    where = draw(st.sampled_from([(), *paths(spec)]))
    kind = draw(st.sampled_from(["replace", "replace", "remove", "unknown"]))
    parent = container(spec, where[:-1]) if where else None
    if kind == "replace" and parent is not None:
        parent[where[-1]] = draw(hostile_values)
    elif kind == "remove" and isinstance(parent, dict):
        del parent[where[-1]]
    else:
        target = container(spec, where)
        if isinstance(target, dict):
            target[draw(st.sampled_from(["bogus", "Image", "x-extra", ""]))] = draw(hostile_values)
    return spec


@st.composite
def hostile_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A spec the CRD accepts, then 0-3 hostile changes. Static keys come from the
    namespace's opted-in Secret `upstream`, so reconciles get past them to the
    children; the OpenAI issuer's Secret is missing (its admin API is not reachable)."""
    spec: dict[str, Any] = draw(manifests())["spec"]
    issuer = spec["credentials"]["issuer"]
    if issuer["type"] == "static":
        issuer["secretRef"] = {"name": "upstream", "key": "apiKey"}
    for _ in range(draw(st.integers(0, 3))):
        spec = draw(mutated(spec))
    return spec


def refusal(err: client.ApiException) -> str:
    """Why the API server refused a create; fails unless it names a field or the cause."""
    body = json.loads(err.body)
    message: str = body["message"]
    if err.status == 422:
        fields = [c.get("field", "") for c in body["details"]["causes"]]
        named = [f for f in fields if f.startswith(("spec", "metadata"))]
        assert named, f"refusal names no field: {message[:500]}"
        assert all(f in message for f in named), message[:500]
        return "invalid"
    if err.status == 400:
        assert re.search(r'unknown field "spec[^"]*"|duplicate field', message), message[:500]
        return "unknown field"
    if err.status == 413:
        assert "too large" in message.lower(), message[:500]
        return "too large"
    raise AssertionError(f"unexpected {err.status}: {message[:500]}")


def ready(body: dict[str, Any]) -> dict[str, Any] | None:
    """The Ready condition once status reflects the current generation."""
    status = body.get("status") or {}
    if status.get("observedGeneration") != body["metadata"]["generation"]:
        return None
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)


def reconciles_per_object(logs: str) -> Counter[str]:
    """Reconciles per AgentDeployment, from the operator's JSON debug lines."""
    counts: Counter[str] = Counter()
    for line in logs.splitlines():
        if '"reconciled' not in line:
            continue
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("message", "").startswith("reconciled"):
                counts[entry["object"]["name"]] += 1
    return counts


def test_hostile_specs_are_refused_or_reported_never_crash(
    cluster: Cluster,
    api_client: client.ApiClient,
    namespace: str,
    make_operator: Callable[..., OperatorProcess],
) -> None:
    source_secret(cluster, namespace)
    operator = make_operator("operator", "--log-level", "debug", "--log-format", "json")
    operator.start()
    api = client.CustomObjectsApi(api_client)
    outcomes: Counter[str] = Counter()
    accepted: dict[str, dict[str, Any]] = {}

    @settings(
        max_examples=CASES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_specs())
    def create(spec: dict[str, Any]) -> None:
        name = f"f{sum(outcomes.values()):04d}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AgentDeployment",
            "metadata": {"name": name},
            "spec": spec,
        }
        try:
            api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict"
            )
        except client.ApiException as err:
            outcomes[refusal(err)] += 1
            return
        outcomes["accepted"] += 1
        accepted[name] = spec

    create()
    print(f"\n{sum(outcomes.values())} cases: {dict(outcomes)}")
    assert sum(outcomes.values()) >= CASES
    # Both sides are exercised in earnest, not one by accident.
    assert outcomes["accepted"] >= CASES // 10 and outcomes["invalid"] >= CASES // 10

    def unreported() -> list[str]:
        listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        return [i["metadata"]["name"] for i in listed if ready(i) is None]

    started = time.monotonic()
    wait_for(lambda: not unreported(), 120 + len(accepted) * 0.3, "a Ready condition on each")
    print(f"all {len(accepted)} accepted reported in {time.monotonic() - started:.1f} s")

    reasons: Counter[str] = Counter()
    examples: dict[str, set[str]] = {}
    for item in api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        condition = ready(item)
        assert condition is not None
        name, reason, message = item["metadata"]["name"], condition["reason"], condition["message"]
        reasons[f"{condition['status']}/{reason}"] += 1
        examples.setdefault(reason, set()).add(re.sub(r"f\d{4}", "NAME", message[:200]))
        assert re.fullmatch(r"[A-Z][A-Za-z]{2,}", reason), (name, reason)
        assert message and len(message) < 2048, (name, message[:300])
        assert "Traceback" not in message and 'File "' not in message, (name, message)
        assert "error decoding patch" not in message, (name, message)  # our bodies parse
        if condition["status"] == "True":
            continue
        assert reason != "InternalError", (name, message, accepted[name])
    print("Ready:", dict(reasons.most_common()))
    for reason, messages in examples.items():
        print(f"  {reason}:", *sorted(messages)[:8], sep="\n    ")

    # Quiet for a while: nobody hot-loops, retries back off.
    before = reconciles_per_object(operator.logs())
    time.sleep(20)
    after = reconciles_per_object(operator.logs())
    assert operator.proc is not None and operator.proc.poll() is None, "the operator exited"
    logs = operator.logs()
    assert "Traceback" not in logs, "a reconcile raised an unexpected exception"
    assert set(before) >= set(accepted), "an accepted object was never reconciled"
    worst = max(accepted, key=lambda n: after[n])
    print(f"reconciles per object: max {after[worst]} ({worst}), total {sum(after.values())}")
    # Retries double their delay (1, 2, 4, 8 s...) and each child's change is one more
    # look: a handful per object, where a loop would make hundreds.
    assert after[worst] <= 25, (worst, accepted[worst])
    idle = {n: after[n] - before[n] for n in accepted if after[n] - before[n] > 10}
    assert not idle, f"reconciled more than 10 times in 20 idle seconds: {idle}"


def test_any_text_the_api_server_accepts_reaches_the_children(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    """Beyond U+FFFF, right-to-left, zero-width, control characters, what YAML would
    read as a line break: as written (the apply body is parsed as YAML)."""
    values = ["emoji 😀🚀", "日本語", "\u202eRTL", "zero\u200bwidth", "tab\tnew\nline", "\ufffd"]
    values += ["del\x7f", "nel\x85", "line\u2028separator", "bom\ufeff", "\uffff"]
    env = [{"name": f"V{i}", "value": v} for i, v in enumerate(values)]
    source_secret(cluster, namespace)
    apply(cluster, namespace, manifest(env=env))
    body = wait_for(lambda: converged(cluster, namespace), 30, "convergence")
    deployment = get(cluster, namespace, "deployment", "bot")
    assert deployment is not None
    agent = deployment["spec"]["template"]["spec"]["containers"][0]
    assert [e for e in agent["env"] if e["name"].startswith("V")] == env
    assert body["status"]["conditions"]
