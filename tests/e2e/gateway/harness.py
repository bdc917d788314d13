"""Harness: run the real `agent-operator gateway` process against in-process fakes.

No Kubernetes here: the mount paths are remapped to temp dirs laid out the
way the kubelet lays out volumes (tests/fakes/volumes.py), exactly as the
operator renders the command line otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from tests.fakes.volumes import KubeVolume, secret_files

GATEWAY_BIN = Path(sys.executable).parent / "agent-operator"
UPSTREAM_KEY = "sk-upstream-one"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def budget_json(**overrides: Any) -> str:
    doc: dict[str, Any] = {
        "limits": [{"period": "day", "maxUSD": 50.0}],
        "alertThresholds": [0.5, 0.8, 0.95],
        "onExhausted": "reject",
        "downgradeModel": "gpt-4o-mini",
        "prices": {
            "gpt-4o": {"input": 2.5, "output": 10.0},
            "gpt-4o-mini": {"input": 0.15, "output": 0.6},
            "claude-sonnet-4-5": {"input": 3.0, "output": 15.0},
            "text-embedding-3-small": {"input": 0.02, "output": 0.0},
        },
        "unknownModelPrice": {"input": 15.0, "output": 60.0},
    }
    doc.update(overrides)
    return json.dumps(doc)


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    inbound: str
    outbound: str
    admin: str
    credentials: KubeVolume
    budget: KubeVolume
    client_keys: KubeVolume | None
    log_path: Path

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def request_logs(self, door: str = "outbound") -> list[dict[str, Any]]:
        return [r for r in self.logs() if r.get("event") == "request" and r.get("door") == door]

    async def last_log(self, door: str = "outbound", count: int = 1) -> dict[str, Any]:
        """The latest request log line, once `count` lines exist (streams log after EOF)."""
        deadline = time.monotonic() + 5
        while True:
            logs = self.request_logs(door)
            if len(logs) >= count or time.monotonic() > deadline:
                assert len(logs) >= count, f"expected {count} request log lines, got {len(logs)}"
                return logs[-1]
            await asyncio.sleep(0.02)

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as s, s.get(self.admin + "/metrics") as r:
            return await r.text()

    async def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for line in (await self.metrics()).splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total


@asynccontextmanager
async def run_gateway(
    tmp: Path,
    upstream_url: str,
    *,
    provider: str = "openai",
    agent_url: str = "http://127.0.0.1:9",
    budget: str | None = None,
    client_keys: dict[str, str] | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> AsyncIterator[Gateway]:
    """Start the gateway as the pod would (same flags), wait until ready, stop it."""
    credentials = KubeVolume(tmp / "credentials", secret_files(UPSTREAM_KEY))
    budget_vol = KubeVolume(tmp / "budget", {"budget.json": budget or budget_json()})
    keys_vol = KubeVolume(tmp / "client-keys", client_keys) if client_keys else None
    ports = [free_port() for _ in range(3)]
    inbound, outbound, admin = (f"127.0.0.1:{p}" for p in ports)
    command = [
        str(GATEWAY_BIN),
        "gateway",
        "--provider",
        provider,
        "--upstream-url",
        upstream_url,
        "--agent-url",
        agent_url,
        "--inbound-listen",
        inbound,
        "--outbound-listen",
        outbound,
        "--admin-listen",
        admin,
        "--credentials-dir",
        str(credentials.path),
        "--budget-dir",
        str(budget_vol.path),
        "--timeout-seconds",
        "5",
        "--retry-attempts",
        "3",
        "--retry-backoff-min-seconds",
        "0.01",
        "--retry-backoff-max-seconds",
        "0.05",
        "--breaker-failure-threshold",
        "5",
        "--breaker-open-seconds",
        "30",
        "--prompt-guard",
        "off",
        "--agent",
        "demo",
        "--namespace",
        "team-a",
    ]
    if keys_vol is not None:
        command += ["--client-keys-dir", str(keys_vol.path)]
    command += list(args)
    log_path = tmp / "gateway.log"
    env = {**os.environ, "AGENT_GATEWAY_RELOAD_INTERVAL_SECONDS": "0.1", **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    gateway = Gateway(
        process,
        f"http://{inbound}",
        f"http://{outbound}",
        f"http://{admin}",
        credentials,
        budget_vol,
        keys_vol,
        log_path,
    )
    try:
        await _wait_ready(gateway)
        yield gateway
    finally:
        process.send_signal(signal.SIGTERM)
        # poll, never block: in-process fakes (e.g. an OTLP collector) must keep serving
        deadline = time.monotonic() + 15
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if process.poll() is None:
            process.kill()
            process.wait()


async def _wait_ready(gateway: Gateway, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if gateway.process.poll() is not None:
                raise RuntimeError(f"gateway exited:\n{gateway.log_path.read_text()}")
            with contextlib.suppress(aiohttp.ClientError):  # not listening yet
                async with session.get(gateway.admin + "/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"gateway not ready:\n{gateway.log_path.read_text()}")


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "one two three four"}]}


async def post(
    url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        raw = await r.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw
        return r.status, data, dict(r.headers)


async def stream(url: str, body: Any) -> tuple[int, list[bytes]]:
    events: list[bytes] = []
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        buf = b""
        async for chunk in r.content.iter_any():
            buf += chunk
        events = [e for e in buf.split(b"\n\n") if e.strip()]
        return r.status, events
