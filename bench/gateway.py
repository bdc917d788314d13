"""Gateway overhead benchmark: direct vs `agent-operator gateway` vs LiteLLM proxy.

One run, one fake upstream (tests/fakes/upstream.py), up to four ways to reach
it: direct, through our gateway's outbound port with the shared spend ledger
(`--spend-store kubernetes`, SpendRecords on the local control plane, which
the run starts when it is not running), through the gateway with the
in-memory store, and through the LiteLLM proxy. Prints a table and writes
bench/results/gateway.json. See bench/README.md.

    .venv/bin/python bench/gateway.py [--quick] [--skip-litellm] [--requests N] [--rounds N]
                                      [--spend-store both|kubernetes|memory]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from agent_operator.api import API_VERSION, KIND
from agent_operator.ledger import parse_record
from agent_operator.sidecar import METRICS_PATH, POD_NAME_ENV, POD_UID_ENV

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hack"))
from localcluster import DEFAULT_DIR, Cluster, ClusterError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "gateway.json"
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
# The bench's own control plane (git-ignored, beside the shared one in .cluster):
# the e2e tests start, stop and restart the shared one, and would load the core
# the bench pins it to.
CLUSTER_DIR = DEFAULT_DIR / "bench"
WRK_SCRIPT = ROOT / "bench" / "wrk" / "post.lua"
UPSTREAM_KEY = "sk-bench-upstream"  # the only key the fake accepts
MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Summarise the plot of Hamlet in three sentences."},
]
BODY = json.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": 64})
STREAM_BODY = json.dumps(
    {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
)
PATH = "/v1/chat/completions"
AGENT = "bench"  # the AgentDeployment whose spend the ledger gateway writes
DAILY_LIMIT_USD = 1_000_000.0  # never reached: every call is admitted and settled
LEDGER_CRDS = (
    ROOT / "crds" / "agentdeployments.agents.dev.yaml",
    ROOT / "crds" / "spendrecords.agents.dev.yaml",
)
# target name per --spend-store of a gateway, in the table's column order
GATEWAYS = {"kubernetes": "gateway-ledger", "memory": "gateway-memory"}
LEDGER_WRITES = "agent_gateway_ledger_writes_total"  # docs/gateway.md
COST = "agent_gateway_cost_usd_total"
TARGETS = {  # what the gateway is held to (README, product spec)
    "added_p50_ms": 0.5,
    "added_p99_ms": 2.0,
    "throughput_rps": 2000.0,
    "added_p99_paced_ms": 10.0,
    "vs_litellm": 5.0,
    "rss_mb": 100.0,
    "rss_growth_mb": 10.0,
}


@dataclass(frozen=True)
class Plan:
    """Counts and durations of one run; every load loop is bounded by them."""

    sequential_requests: int = 2000
    sequential_min_seconds: float = 3.0  # fast targets get more samples: a stabler p99
    warmup_seconds: float = 2.0
    saturation_seconds: float = 10.0
    paced_rate: int = 2000
    paced_seconds: float = 10.0
    ttft_requests: int = 300
    rss_requests: int = 100_000
    connections: int = 64
    rounds: int = 3  # each phase runs this often per target, interleaved; medians reported


QUICK = Plan(
    sequential_requests=300,
    sequential_min_seconds=1.0,
    warmup_seconds=0.5,
    saturation_seconds=3.0,
    paced_seconds=3.0,
    ttft_requests=50,
    rss_requests=5000,
    rounds=1,
)


@dataclass
class Target:
    name: str
    url: str  # base URL; requests go to url + PATH
    auth: str  # what the client sends as bearer key
    process: subprocess.Popen[bytes] | None = None
    admin: str | None = None  # a gateway's admin base URL (/metrics)
    store: str | None = None  # a gateway's --spend-store
    results: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(core: int | None, command: list[str]) -> list[str]:
    return command if core is None else ["taskset", "-c", str(core), *command]


def rss_mb(process: subprocess.Popen[bytes]) -> float:
    """Resident set size of a process, MB (from /proc, Linux)."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024.0


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def start_fake(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    command = [sys.executable, "-m", "tests.fakes.upstream", "--host", "127.0.0.1"]
    command += ["--port", "0", "--valid-key", UPSTREAM_KEY, "--max-recorded", "1000"]
    with log.open("wb") as err:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        stop(process)
        raise SystemExit(f"fake upstream did not start (see {log.name}): {line!r}")
    return process, line.split()[-1]


async def wait_ready(target: Target, seconds: float, log: Path) -> None:
    """Poll one real request through the target until it answers 200."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    headers = {"Authorization": f"Bearer {target.auth}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if target.process is not None and target.process.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.post(
                    target.url + PATH, data=BODY, headers=headers, timeout=aiohttp.ClientTimeout(5)
                ) as response:
                    if response.status == 200:
                        return
                    last = f"{response.status} {(await response.text())[:200]}"
            await asyncio.sleep(0.25)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
    raise RuntimeError(f"{target.name} not ready after {seconds:.0f} s: {last}; log tail:\n{tail}")


def gateway_available() -> str | None:
    """None when `agent-operator gateway` runs, else why not."""
    exe = Path(sys.executable).with_name("agent-operator")
    if not exe.exists():
        return f"{exe.name} not installed in this venv (make venv)"
    probe = subprocess.run(
        [str(exe), "gateway", "--help"], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        return "agent-operator gateway --help failed: " + probe.stderr.strip().splitlines()[-1]
    return None


@dataclass
class Ledger:
    """Where the ledger gateway keeps spend: a namespace of the local control plane."""

    cluster: Cluster
    started: bool  # this run started the control plane, so it stops it
    namespace: str
    account: Path  # what a pod's service-account dir holds: the admin's token and the CA
    agent_uid: str = ""


def ledger_up(tmp: Path, cluster_dir: Path) -> Ledger:
    """The control plane (started unless running), the CRDs, a namespace holding
    the bench's AgentDeployment (owner of the SpendRecords), and a service-account
    dir. A control plane started here inherits this process's core: the load core."""
    cluster = Cluster(cluster_dir)
    started = cluster.up()
    ledger = Ledger(cluster, started, f"bench-{secrets.token_hex(4)}", tmp / "serviceaccount")
    try:
        for crd in LEDGER_CRDS:
            cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        crds = [f"crd/{crd.name.removesuffix('.yaml')}" for crd in LEDGER_CRDS]
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
        cluster.kubectl("create", "namespace", ledger.namespace)
        # never reconciled (no operator runs here): it only owns the records, as in a cluster
        agent = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": AGENT, "namespace": ledger.namespace},
            "spec": {
                "image": "bench.invalid/agent:0",
                "credentials": {"issuer": {"type": "static", "secretRef": {"name": "bench"}}},
                "budget": {"limits": [{"period": "day", "maxUSD": DAILY_LIMIT_USD}]},
            },
        }
        created = cluster.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(agent))
        ledger.agent_uid = json.loads(created.stdout)["metadata"]["uid"]
        ledger.account.mkdir()
        shutil.copy(cluster.pki / "admin.token", ledger.account / "token")
        shutil.copy(cluster.pki / "ca.crt", ledger.account / "ca.crt")
    except BaseException:
        ledger_down(ledger)
        raise
    return ledger


def ledger_down(ledger: Ledger) -> None:
    """Delete the bench's namespace (records and all); stop the control plane if we started it."""
    ledger.cluster.kubectl("delete", "namespace", ledger.namespace, "--wait=false", check=False)
    if ledger.started:
        ledger.cluster.down()


def ledger_records(ledger: Ledger) -> dict[str, Any]:
    """The SpendRecords in the bench's namespace: how many, and the USD they hold
    (None when the API server does not answer: a shared one may be restarted by tests)."""
    command = ("get", "spendrecords", "-n", ledger.namespace, "-o", "json")
    for _ in range(30):
        listed = ledger.cluster.kubectl(*command, check=False)
        if listed.returncode == 0:
            specs = [parse_record(item) for item in json.loads(listed.stdout)["items"]]
            return {"records": len(specs), "usd": sum(s.spent_usd for s in specs if s is not None)}
        time.sleep(1.0)
    print(f"SpendRecords not listed: {listed.stderr.strip()}")
    return {"records": None, "usd": None}


def scrape(target: Target) -> dict[str, float]:
    """A gateway's /metrics: value per sample name with its labels."""
    assert target.admin is not None
    with urllib.request.urlopen(target.admin + METRICS_PATH, timeout=10) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def ledger_writes(samples: dict[str, float]) -> tuple[float, float]:
    """(ok, error) ledger writes since the gateway started."""
    return (
        samples.get(LEDGER_WRITES + '{result="ok"}', 0.0),
        samples.get(LEDGER_WRITES + '{result="error"}', 0.0),
    )


def start_gateway(
    tmp: Path, upstream: str, core: int | None, store: str, ledger: Ledger | None
) -> Target:
    name = GATEWAYS[store]
    tmp = tmp / name
    credentials, budget = tmp / "credentials", tmp / "budget"
    credentials.mkdir(parents=True)
    budget.mkdir()
    (credentials / "current").write_text(UPSTREAM_KEY)
    # generous limits: the budget is checked and spend counted on every call, never exhausted
    (budget / "budget.json").write_text(
        json.dumps(
            {
                "limits": [{"period": "day", "maxUSD": DAILY_LIMIT_USD}],
                "alertThresholds": [0.5, 0.8, 0.95],
                "onExhausted": "reject",
                "prices": {MODEL: {"input": 0.15, "output": 0.6}},
                "unknownModelPrice": {"input": 15.0, "output": 60.0},
            }
        )
    )
    outbound, admin = free_port(), free_port()
    exe = str(Path(sys.executable).with_name("agent-operator"))
    command = [exe, "gateway", "--provider", "openai", "--upstream-url", upstream + "/v1"]
    command += ["--agent-url", f"http://127.0.0.1:{free_port()}"]
    command += ["--inbound-listen", f"127.0.0.1:{free_port()}"]
    command += ["--outbound-listen", f"127.0.0.1:{outbound}"]
    command += ["--admin-listen", f"127.0.0.1:{admin}"]
    command += ["--credentials-dir", str(credentials), "--budget-dir", str(budget)]
    command += ["--timeout-seconds", "30", "--retry-attempts", "3"]
    command += ["--retry-backoff-min-seconds", "1", "--retry-backoff-max-seconds", "10"]
    command += ["--breaker-failure-threshold", "5", "--breaker-open-seconds", "30"]
    command += ["--prompt-guard", "block", "--spend-store", store]
    env = dict(os.environ)
    if ledger is not None:
        # as rendered for a pod: its AgentDeployment's uid, a journal dir, the
        # pod's name and uid from the downward API, the API server from the kubelet
        journal = tmp / "journal"
        journal.mkdir()
        command += ["--agent-uid", ledger.agent_uid, "--spend-journal-dir", str(journal)]
        command += ["--service-account-dir", str(ledger.account)]
        host, port = ledger.cluster.server().removeprefix("https://").rsplit(":", 1)
        pod_uid = str(uuid.uuid4())
        env |= {
            POD_NAME_ENV: f"{AGENT}-{pod_uid[:8]}",
            POD_UID_ENV: pod_uid,
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
        }
    namespace = ledger.namespace if ledger is not None else "bench"
    command += ["--agent", AGENT, "--namespace", namespace]
    log = tmp / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            pinned(core, command), stdout=out, stderr=subprocess.STDOUT, env=env
        )
    # the agent's SDK sends the placeholder key; the gateway injects the real one
    return Target(
        name,
        f"http://127.0.0.1:{outbound}",
        "injected-by-gateway",
        process,
        admin=f"http://127.0.0.1:{admin}",
        store=store,
    )


def ensure_litellm() -> Path:
    """bench/.venv-litellm with `litellm[proxy]`, created on first use."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print(
        f"creating {LITELLM_VENV.relative_to(ROOT)} (pip install 'litellm[proxy]') ...", flush=True
    )
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=300)
    pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"]
    subprocess.run(pip, check=True, timeout=1200)
    return exe


def start_litellm(tmp: Path, upstream: str, core: int | None) -> Target:
    exe = ensure_litellm()
    config = tmp / "litellm.yaml"
    # openai-compatible upstream, no database: the lightest LiteLLM proxy setup
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream}/v1\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )
    port = free_port()
    # LiteLLM refuses to start without a master key; clients present it as their key
    master_key = "sk-" + secrets.token_hex(32)
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": master_key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the price map
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
    }
    command = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", "1"]
    log = tmp / "litellm.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            pinned(core, command), stdout=out, stderr=subprocess.STDOUT, env=env
        )
    return Target("litellm", f"http://127.0.0.1:{port}", master_key, process)


def litellm_version() -> str | None:
    pip = LITELLM_VENV / "bin" / "pip"
    if not pip.exists():
        return None
    shown = subprocess.run([str(pip), "show", "litellm"], capture_output=True, text=True)
    return next((x.split()[1] for x in shown.stdout.splitlines() if x.startswith("Version:")), None)


# ------------------------------------------------------------------ load


def wrk(target: Target, connections: int, seconds: float, delay_ms: float = 0.0) -> dict[str, Any]:
    """One wrk run (one thread, `connections` keep-alive connections, POST
    BODY) on the load core; latencies in microseconds."""
    env = {
        **os.environ,
        "WRK_BODY": BODY,
        "WRK_PATH": PATH,
        "WRK_AUTH": target.auth,
        "WRK_DELAY_MS": str(delay_ms),
    }
    duration = max(1, round(seconds))
    cpu = process_cpu_seconds(target.process)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s"]
    command += ["-s", str(WRK_SCRIPT), target.url]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=duration + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    result: dict[str, Any] = json.loads(line[len("WRK_JSON ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["error_count"] = sum(result["errors"].values())
    if target.process is not None and result["requests"]:
        # what one request costs the proxy: moves less than req/s on a busy machine
        spent = process_cpu_seconds(target.process) - cpu
        result["cpu_us_per_request"] = spent / result["requests"] * 1e6
    return result


def ms(us: float) -> float:
    return us / 1000.0


def sequential(target: Target, plan: Plan) -> dict[str, Any]:
    """One connection, one request at a time: the latency an agent sees."""
    warm = wrk(target, 1, plan.warmup_seconds)
    # long enough for `sequential_requests` at the warm-up rate, bounded by 60 s
    needed = plan.sequential_requests / max(warm["rps"], 1.0) * 1.2
    seconds = min(60.0, max(plan.sequential_min_seconds, needed))
    run = wrk(target, 1, seconds)
    return {
        "requests": run["requests"],
        "errors": run["error_count"],
        "p50_ms": ms(run["latency_us"]["p50"]),
        "p99_ms": ms(run["latency_us"]["p99"]),
        "rps": run["rps"],
    }


def saturation(target: Target, plan: Plan) -> dict[str, Any]:
    """`connections` busy connections: the most the target serves on its core."""
    wrk(target, plan.connections, plan.warmup_seconds)
    run = wrk(target, plan.connections, plan.saturation_seconds)
    result = {
        "requests": run["requests"],
        "errors": run["error_count"],
        "rps": run["rps"],
        "p50_ms": ms(run["latency_us"]["p50"]),
        "p99_ms": ms(run["latency_us"]["p99"]),
    }
    if "cpu_us_per_request" in run:
        result["cpu_us_per_request"] = run["cpu_us_per_request"]
    return result


def paced(target: Target, plan: Plan) -> dict[str, Any]:
    """`connections` connections paced to about `paced_rate` req/s in total
    (each waits connections/rate between requests): latency under load
    without the queueing of saturation."""
    delay_ms = plan.connections / plan.paced_rate * 1000.0
    run = wrk(target, plan.connections, plan.paced_seconds, delay_ms)
    return {
        "requests": run["requests"],
        "errors": run["error_count"],
        "rps": run["rps"],
        "p50_ms": ms(run["latency_us"]["p50"]),
        "p99_ms": ms(run["latency_us"]["p99"]),
    }


async def ttft(target: Target, requests: int) -> dict[str, Any]:
    """Streaming: time from sending to the first content token, sequential,
    measured by an aiohttp client on the load core."""
    headers = {"Authorization": f"Bearer {target.auth}", "Content-Type": "application/json"}
    samples: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(requests + 20):  # the first 20 warm up
            started = time.perf_counter()
            first: float | None = None
            async with session.post(target.url + PATH, data=STREAM_BODY, headers=headers) as r:
                if r.status != 200:
                    errors += 1
                async for line in r.content:
                    if first is None and line.startswith(b"data: {"):
                        choices = json.loads(line[6:]).get("choices") or [{}]
                        if choices[0].get("delta", {}).get("content"):
                            first = time.perf_counter() - started
            if first is None:
                errors += 1
            elif i >= 20:
                samples.append(first * 1000.0)
    samples.sort()
    if not samples:
        return {"requests": 0, "errors": errors}
    return {
        "requests": len(samples),
        "errors": errors,
        "p50_ms": samples[len(samples) // 2],
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
    }


def memory(target: Target, plan: Plan, rps: float) -> dict[str, Any]:
    """RSS before and after `rss_requests` requests at `connections`
    connections, sampled after each chunk of about a quarter of them."""
    assert target.process is not None
    before = rss_mb(target.process)
    samples: list[tuple[int, float]] = [(0, before)]
    total, errors = 0, 0
    chunk = max(1, plan.rss_requests // 4)
    deadline = time.monotonic() + 900.0
    # bounded in count and time; the rate is re-measured each chunk because a
    # busy machine serves fewer requests than the saturation phase did
    for _ in range(40):
        if total >= plan.rss_requests or time.monotonic() > deadline:
            break
        wanted = min(chunk, plan.rss_requests - total)
        run = wrk(target, plan.connections, min(300.0, max(1.0, wanted / max(rps, 1.0))))
        rps = run["rps"]
        total += run["requests"]
        errors += run["error_count"]
        samples.append((total, rss_mb(target.process)))
    after = samples[-1][1]
    return {
        "requests": total,
        "errors": errors,
        "before_mb": before,
        "after_mb": after,
        # growth after the first chunk: the first one includes warming caches and pools
        "growth_mb": after - samples[1][1] if len(samples) > 2 else after - before,
        "samples": samples,
    }


# ------------------------------------------------------------------ report


def added(proxy: dict[str, Any], direct: dict[str, Any], key: str) -> float | None:
    if key not in proxy or key not in direct:
        return None
    value: float = proxy[key] - direct[key]
    return value


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def report(targets: dict[str, Target], plan: Plan) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Table rows and pass/fail checks of each gateway against TARGETS."""
    direct = targets["direct"].results
    names = [n for n in ("direct", *GATEWAYS.values(), "litellm") if n in targets]
    gateways = [n for n in GATEWAYS.values() if n in targets]
    rows: list[list[str]] = []
    checks: list[dict[str, Any]] = []

    def row(label: str, values: dict[str, Any], target: str = "", digits: int = 2) -> None:
        rows.append([label, *(fmt(values.get(n), digits) for n in names), target])

    def check(name: str, values: dict[str, Any], limit: float, at_most: bool) -> str:
        """Every gateway's value against the limit; the verdict names who missed."""
        if not gateways:
            return ""
        missed, unmeasured = [], []
        for n in gateways:
            value = values.get(n)
            # an added latency below zero means the baseline was noisier than the
            # gateway: no measurement, never a pass
            valid = value is not None and not (name.startswith("added") and value < 0)
            ok = valid and (value <= limit if at_most else value >= limit)
            checks.append(
                {
                    "check": name,
                    "target": n,
                    "value": value,
                    "limit": limit,
                    "ok": ok,
                    "valid": valid,
                }
            )
            if not valid:
                unmeasured.append(n)
            elif not ok:
                missed.append(n)
        verdict = "ok" if not missed and not unmeasured else ""
        if missed:
            verdict += "MISSED by " + ", ".join(missed)
        if unmeasured:
            verdict += (" " if verdict else "") + "NOT MEASURED for " + ", ".join(unmeasured)
        return ("<= " if at_most else ">= ") + fmt(limit, 1) + " " + verdict

    def of(phase: str, key: str) -> dict[str, Any]:
        return {n: targets[n].results.get(phase, {}).get(key) for n in names}

    def plus(phase: str, key: str) -> dict[str, Any]:
        return {
            n: added(targets[n].results.get(phase, {}), direct.get(phase, {}), key)
            for n in names
            if n != "direct"
        }

    row("sequential requests", of("sequential", "requests"), digits=0)
    row("sequential p50 (ms)", of("sequential", "p50_ms"), digits=3)
    row("sequential p99 (ms)", of("sequential", "p99_ms"), digits=3)
    seq_p50, seq_p99 = plus("sequential", "p50_ms"), plus("sequential", "p99_ms")
    limit = TARGETS["added_p50_ms"]
    row("  added p50 (ms)", seq_p50, check("added p50 sequential", seq_p50, limit, True), 3)
    limit = TARGETS["added_p99_ms"]
    row("  added p99 (ms)", seq_p99, check("added p99 sequential", seq_p99, limit, True), 3)
    sat = of("saturation", "rps")
    limit = TARGETS["throughput_rps"]
    row(
        f"throughput @{plan.connections} conns (req/s)",
        sat,
        check("throughput one core", sat, limit, False),
        digits=0,
    )
    row(f"  p99 @{plan.connections} conns saturated (ms)", of("saturation", "p99_ms"))
    row("  proxy CPU per request (us)", of("saturation", "cpu_us_per_request"), digits=0)
    if "gateway-ledger" in targets:
        row("  ledger writes/s (per gateway)", of("saturation", "ledger_writes_per_s"))
    row(f"rate @{plan.paced_rate} req/s paced (req/s)", of("paced", "rps"), digits=0)
    row(f"  p99 @{plan.paced_rate} req/s (ms)", of("paced", "p99_ms"))
    paced_p99 = plus("paced", "p99_ms")
    limit = TARGETS["added_p99_paced_ms"]
    row(
        f"  added p99 @{plan.paced_rate} req/s (ms)",
        paced_p99,
        check("added p99 at paced rate", paced_p99, limit, True),
    )
    if gateways and "litellm" in targets:
        ratios: dict[str, Any] = {
            n: sat[n] / sat["litellm"] if sat.get(n) and sat.get("litellm") else None
            for n in gateways
        }
        target = check("throughput vs litellm", ratios, TARGETS["vs_litellm"], False)
        row(
            "throughput / litellm's",
            {n: fmt(r) + "x" if r else "-" for n, r in ratios.items()},
            target,
        )
    row("TTFT stream p50 (ms)", of("ttft", "p50_ms"), digits=3)
    row("TTFT stream p99 (ms)", of("ttft", "p99_ms"), digits=3)
    row("  added TTFT p50 (ms)", plus("ttft", "p50_ms"), digits=3)
    row("  added TTFT p99 (ms)", plus("ttft", "p99_ms"), digits=3)
    mem = {n: targets[n].results["memory"] for n in gateways if "memory" in targets[n].results}
    if mem:
        row("RSS phase requests", {n: m["requests"] for n, m in mem.items()}, digits=0)
        after = {n: m["after_mb"] for n, m in mem.items()}
        row(
            "  RSS before / after (MB)",
            {n: f"{m['before_mb']:.1f} / {m['after_mb']:.1f}" for n, m in mem.items()},
            check("rss after", after, TARGETS["rss_mb"], True),
        )
        growth = {n: m["growth_mb"] for n, m in mem.items()}
        limit = TARGETS["rss_growth_mb"]
        row("  growth after first quarter (MB)", growth, check("rss flat", growth, limit, True), 1)
    ledger_gateway = targets.get("gateway-ledger")
    ledger = ledger_gateway.results.get("ledger") if ledger_gateway is not None else None
    if ledger is not None:
        only = "gateway-ledger"
        row(
            "ledger writes ok / failed, all phases",
            {only: f"{ledger['writes_ok']:,.0f} / {ledger['writes_error']:,.0f}"},
        )
        row("SpendRecords at end", {only: ledger["records"]})
        # the ledger, after the gateway stopped (its last write), against its own count
        usd, cost = ledger["usd"], ledger["gateway_cost_usd"]
        held = usd is not None and abs(usd - cost) <= 1e-9 * max(1.0, usd)
        checks.append({"check": "ledger holds all spend", "target": only, "ok": held, **ledger})
        row(
            "  USD in records / gateway's cost_usd",
            {only: f"{fmt(usd, 6)} / {fmt(cost, 6)}"},
            "equal " + ("ok" if held else "MISSED"),
        )
    errors: dict[str, Any] = {
        n: sum(p.get("errors", 0) for p in targets[n].results.values() if isinstance(p, dict))
        for n in names
    }
    row("errors (non-2xx, socket)", errors, digits=0)
    # CPU that processes not of this run took on the proxy core: a high value
    # means the latency rows measured the machine's other work too
    foreign: dict[str, Any] = {
        n: max(
            (targets[n].results.get(p, {}).get("foreign_cpu_pct") or 0.0 for p in PHASES),
            default=None,
        )
        for n in names
    }
    row("other processes on proxy core, worst phase (%)", foreign, digits=1)
    return [["metric", *names, "gateway target"], *rows], checks


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1], strict=True)
        ]
        print("  ".join([*cells, r[-1]]))
        if i == 0:
            print("  ".join("-" * w for w in widths))


# ------------------------------------------------------------------ main


def cores() -> tuple[int | None, int | None]:
    """(load core, proxy core): fake + load generator share one, the proxy
    gets the other. None when the machine has a single CPU."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    if shutil.which("taskset") is None:
        print("taskset is missing: install it with `apt-get install -y util-linux`")
        return None, None
    return available[0], available[1]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


PHASES = ("sequential", "saturation", "paced", "ttft")


def core_busy_seconds(core: int) -> float:
    """CPU seconds a core has spent busy since boot (/proc/stat)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line.split()[1:9])
            return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return 0.0


def process_cpu_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """User + system CPU seconds of a process, all its threads (/proc/PID/stat)."""
    if process is None or process.poll() is not None:
        return 0.0
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(
    phase: str, target: Target, plan: Plan, proxy_core: int | None, idle: list[Target]
) -> dict[str, Any]:
    """One round of a phase, with the share of the proxy core that other
    processes took meanwhile: the usual cause of a bad p99 on a shared machine;
    for a ledger gateway, the SpendRecord writes it made meanwhile."""
    ours = [target, *idle]
    writes = ledger_writes(scrape(target)) if target.store == "kubernetes" else None
    started = time.monotonic()
    busy = core_busy_seconds(proxy_core) if proxy_core is not None else 0.0
    own = sum(process_cpu_seconds(t.process) for t in ours)
    if phase == "sequential":
        result = sequential(target, plan)
    elif phase == "saturation":
        result = saturation(target, plan)
    elif phase == "paced":
        result = paced(target, plan)
    else:
        result = asyncio.run(ttft(target, plan.ttft_requests))
    elapsed = time.monotonic() - started
    if proxy_core is not None:
        foreign = core_busy_seconds(proxy_core) - busy
        foreign -= sum(process_cpu_seconds(t.process) for t in ours) - own
        result["foreign_cpu_pct"] = max(0.0, foreign) / elapsed * 100.0
    if writes is not None:
        ok, failed = ledger_writes(scrape(target))
        result["ledger_writes"] = ok - writes[0]
        result["ledger_write_errors"] = failed - writes[1]
        result["ledger_writes_per_s"] = (ok - writes[0]) / elapsed
    return result


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each figure over the rounds (counts are summed): one round
    disturbed by another process on the machine does not decide the result."""
    combined: dict[str, Any] = {"rounds": rounds}
    for key in rounds[0]:
        values = [r[key] for r in rounds if key in r]
        if key in ("requests", "errors"):
            combined[key] = sum(values)
        else:
            combined[key] = statistics.median(values)
    return combined


def measure(targets: dict[str, Target], plan: Plan, proxy_core: int | None) -> None:
    """Every phase against every target, round by round; then each gateway's memory."""
    for target in targets.values():
        if target.process is not None:
            target.results["rss_start_mb"] = rss_mb(target.process)
    for phase in PHASES:
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for i in range(plan.rounds):
            for name, target in targets.items():
                print(f"[{phase} {i + 1}/{plan.rounds}] {name} ...", flush=True)
                others = [t for n, t in targets.items() if n != name]
                rounds[name].append(run_phase(phase, target, plan, proxy_core, others))
        for name, target in targets.items():
            target.results[phase] = combine(rounds[name])
    for name in [n for n in GATEWAYS.values() if n in targets]:
        gateway = targets[name]
        print(f"[memory] {name} over {plan.rss_requests:,} requests ...", flush=True)
        gateway.results["memory"] = memory(gateway, plan, gateway.results["saturation"]["rps"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-gateway", action="store_true")
    parser.add_argument(
        "--spend-store",
        choices=("both", *GATEWAYS),
        default="both",
        help="the gateway's spend store: kubernetes (the shared ledger on the local\n"
        "control plane), memory, or both side by side (default)",
    )
    parser.add_argument("--requests", type=int, help="requests of the RSS phase (100000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per phase (3; quick: 1)")
    parser.add_argument(
        "--cluster-dir",
        type=Path,
        default=CLUSTER_DIR,
        help="data dir of the local control plane (hack/localcluster.py); started here\n"
        "when not running, and then stopped at the end (default: .cluster/bench, the\n"
        "bench's own; .cluster is the one of hack/cluster and the e2e tests)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    if args.requests:
        plan = Plan(**{**asdict(plan), "rss_requests": args.requests})
    if args.rounds:
        plan = Plan(**{**asdict(plan), "rounds": max(1, args.rounds)})

    if shutil.which("wrk") is None:
        print("wrk is missing: install it with `apt-get install -y wrk` (Debian/Ubuntu)")
        return 2
    load_core, proxy_core = cores()
    if load_core is None:
        print("warning: nothing is pinned; figures are not comparable with pinned runs")
    else:
        os.sched_setaffinity(0, {load_core})  # children (fake, wrk) inherit the load core
    skip_gateway = "--skip-gateway" if args.skip_gateway else gateway_available()
    if skip_gateway:
        print(f"gateway skipped: {skip_gateway}")

    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(
            f"warning: load average {load_before:.2f}: other processes will show up as p99 spikes"
        )
    stores = [] if skip_gateway else [x for x in GATEWAYS if args.spend_store in (x, "both")]
    ledger_skipped: str | None = None
    targets: dict[str, Target] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp_name:
        tmp = Path(tmp_name)
        ledger: Ledger | None = None
        if "kubernetes" in stores:
            print("[ledger] local control plane, CRDs, namespace ...", flush=True)
            try:
                ledger = ledger_up(tmp, args.cluster_dir)
            except (ClusterError, OSError, subprocess.SubprocessError) as exc:
                ledger_skipped = f"the local control plane is not usable: {exc}"
                print(f"gateway-ledger skipped: {ledger_skipped}")
                stores.remove("kubernetes")
        try:
            fake, upstream = start_fake(tmp / "fake.log")
            targets["direct"] = Target("direct", upstream, UPSTREAM_KEY)
            try:
                # all targets up at once, phases interleaved round by round: a burst
                # of load from elsewhere on the machine hits every target alike
                for store in stores:
                    gateway = start_gateway(
                        tmp, upstream, proxy_core, store, ledger if store == "kubernetes" else None
                    )
                    targets[gateway.name] = gateway
                    log = tmp / gateway.name / "gateway.log"
                    asyncio.run(wait_ready(gateway, 60, log))
                if not args.skip_litellm:
                    targets["litellm"] = start_litellm(tmp, upstream, proxy_core)
                    asyncio.run(wait_ready(targets["litellm"], 240, tmp / "litellm.log"))
                measure(targets, plan, proxy_core)
                final = scrape(targets["gateway-ledger"]) if ledger is not None else {}
            finally:
                for target in targets.values():
                    stop(target.process)  # a ledger gateway writes what is unwritten
                stop(fake)
            if ledger is not None:
                ok, failed = ledger_writes(final)
                cost = sum(v for k, v in final.items() if k.startswith(COST + "{"))
                targets["gateway-ledger"].results["ledger"] = {
                    **ledger_records(ledger),
                    "gateway_cost_usd": cost,
                    "writes_ok": ok,
                    "writes_error": failed,
                    "namespace": ledger.namespace,
                }
        finally:
            if ledger is not None:
                ledger_down(ledger)

    rows, checks = report(targets, plan)
    print()
    print_table(rows)
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["bench/gateway.py", *(argv if argv is not None else sys.argv[1:])]),
        "plan": asdict(plan),
        "cpu": cpu_model(),
        "cores": {"load_and_fake": load_core, "proxy": proxy_core},
        "python": platform.python_version(),
        "litellm": litellm_version() if "litellm" in targets else None,
        "body": json.loads(BODY),
        "gateway_skipped": skip_gateway or None,
        "gateway_ledger_skipped": ledger_skipped,
        "control_plane": None
        if ledger is None
        else {"dir": str(ledger.cluster.root), "started_here": ledger.started},
        "spend_store": args.spend_store,
        "load_average_1m": {"start": load_before, "end": os.getloadavg()[0]},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "meta": meta,
        "targets": TARGETS,
        "results": {n: t.results for n, t in targets.items()},
        "checks": checks,
        "table": rows,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
