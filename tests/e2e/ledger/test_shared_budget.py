"""Five gateways of one AgentDeployment share one budget through the SpendRecord ledger.

The gateways run as their pods would (tests/e2e/ledger/harness.py), each with
its own pod-bound token of `<agent>-gateway`, against the real API server;
the operator runs too (it created their identity and reports status). They
spend concurrently against a fake provider that bills every answer; the
bound on overspend is the one docs/budget.md states.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from tests.e2e.conftest import OperatorProcess
from tests.e2e.ledger.harness import PodGateway, kube_json, ledger_total, live_pods, pod_gateway
from tests.e2e.test_operator import wait_for
from tests.fakes.upstream import FakeUpstream

from agent_operator.ledger import MIN_WRITE_GAP_SECONDS, flush_delta
from localcluster import Cluster

pytestmark = pytest.mark.e2e

AGENT = "spender"
REPLICAS = 5
WORKERS = 2  # calls in flight per gateway
PRICE_OUT = 1000.0  # USD per 1M output tokens: 10 tokens (the fake's answer) = 0.01 USD
COST = 10 * PRICE_OUT / 1e6
LIMIT = 1.0
LATENCY = 0.2  # seconds the fake provider takes per answer
FLUSH_SECONDS = 2.0  # the rendered default (ledger.FLUSH_INTERVAL_SECONDS)
CHAT = {"model": "ledger-model", "messages": [{"role": "user", "content": "hello"}]}


def setup_agent(cluster: Cluster, namespace: str, upstream_url: str) -> None:
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "upstream",
        "--from-literal=apiKey=sk-ledger-test",
    )
    cluster.kubectl("-n", namespace, "label", "secret", "upstream", "agents.dev/issuer-source=true")
    body = {
        "apiVersion": "agents.dev/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": {"name": AGENT},
        "spec": {
            "image": "registry.example.com/spender:1.0",
            "replicas": REPLICAS,
            "model": {"provider": "openai", "baseURL": upstream_url + "/v1", "default": "x"},
            "credentials": {
                "issuer": {"type": "static", "secretRef": {"name": "upstream", "key": "apiKey"}}
            },
            "budget": {
                "limits": [{"period": "day", "maxUSD": LIMIT}],
                "alertThresholds": [0.5, 0.8],
                "prices": {"ledger-model": {"input": 0, "output": PRICE_OUT}},
            },
        },
    }
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))


@pytest.fixture
async def started() -> AsyncIterator[list[PodGateway]]:
    """Gateways started by the test; all stopped at its end, whatever happened."""
    gateways: list[PodGateway] = []
    yield gateways
    await asyncio.gather(*(g.stop() for g in gateways))


async def start_gateways(
    cluster: Cluster, namespace: str, root: Path, count: int, started: list[PodGateway]
) -> list[PodGateway]:
    pods = await asyncio.to_thread(
        wait_for,
        lambda: (p := live_pods(cluster, namespace, AGENT)) and len(p) >= count and p,
        60,
        f"{count} pods of the ReplicaSet",
    )
    gateways = [pod_gateway(cluster, namespace, AGENT, pod, uid, root) for pod, uid in pods]
    started += gateways
    await asyncio.gather(*(g.start() for g in gateways))
    return gateways


class Load:
    """WORKERS callers per gateway; each stops at its first refusal (429 or 503)."""

    def __init__(self) -> None:
        self.ok: dict[str, int] = {}
        self.refused: dict[int, int] = {}
        self.started = time.monotonic()

    async def caller(
        self, session: aiohttp.ClientSession, gateway: PodGateway, stop_after: int | None
    ) -> None:
        done = 0
        while stop_after is None or done < stop_after:
            try:
                async with session.post(
                    gateway.outbound_url + "/v1/chat/completions", json=CHAT
                ) as r:
                    await r.read()
                    status = r.status
            except aiohttp.ClientError:
                return  # the gateway was killed under us
            if status != 200:
                self.refused[status] = self.refused.get(status, 0) + 1
                return
            done += 1
            self.ok[gateway.pod] = self.ok.get(gateway.pod, 0) + 1

    async def run(self, gateways: list[PodGateway], stop_after: int | None = None) -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(self.caller(session, g, stop_after) for g in gateways for _ in range(WORKERS))
            )


def billed_usd(upstream: FakeUpstream) -> float:
    return sum(
        out * PRICE_OUT / 1e6 for model, _, out in upstream.billed if model == "ledger-model"
    )


async def test_five_gateways_hold_one_budget_and_lose_nothing_to_kill9(
    cluster: Cluster,
    namespace: str,
    operator_process: OperatorProcess,
    tmp_path: Path,
    started: list[PodGateway],
) -> None:
    async with FakeUpstream(delay=LATENCY) as upstream:
        setup_agent(cluster, namespace, upstream.url)
        gateways = await start_gateways(cluster, namespace, tmp_path, REPLICAS, started)

        # a first round of spend on every gateway
        await Load().run(gateways, stop_after=4)
        # two gateways make a burst and are killed -9 at once: what they charged is
        # in their journal and maybe not yet in the ledger
        victims = gateways[:2]
        async with aiohttp.ClientSession() as session:
            for g in victims:
                for _ in range(3):
                    async with session.post(
                        g.outbound_url + "/v1/chat/completions", json=CHAT
                    ) as r:
                        assert r.status == 200
        unwritten = [g.journal.joinpath("unwritten").read_text() for g in victims]
        for g in victims:
            g.kill9()
        assert any(unwritten), "the burst was written before the kill: nothing tested"
        # the kubelet restarts the container: same pod, same emptyDir
        await asyncio.gather(*(g.start() for g in victims))

        load = Load()
        await load.run(gateways)
        elapsed = time.monotonic() - load.started
        assert set(load.refused) == {429}, load.refused  # refused by the budget, nothing else

        # streaming calls are refused too once the limit is reached
        async with aiohttp.ClientSession() as session:
            stream = {**CHAT, "stream": True}
            async with session.post(
                gateways[3].outbound_url + "/v1/chat/completions", json=stream
            ) as r:
                assert r.status == 429
                assert (await r.json())["error"]["type"] == "budget_exhausted"

        charged = billed_usd(upstream)
        # overspend bound (docs/budget.md): per gateway, unwritten spend (a write every
        # MIN_WRITE_GAP_SECONDS at most, at least every delta) plus the calls in flight
        rate = max(load.ok.values()) / elapsed  # calls per second of the busiest gateway
        unwritten_max = max(flush_delta([LIMIT]), rate * MIN_WRITE_GAP_SECONDS * COST) + COST
        bound = REPLICAS * (unwritten_max + WORKERS * COST)
        print(f"charged {charged:.4f} USD, bound {LIMIT + bound:.4f}, rate {rate:.1f}/s")
        assert LIMIT <= charged <= LIMIT + bound + 1e-9

        # nothing lost, nothing counted twice: the ledger holds what the provider billed
        stopped = time.monotonic()
        totals = await asyncio.to_thread(
            wait_for,
            lambda: (
                (t := ledger_total(cluster, namespace, AGENT))
                and abs(sum(t.values()) - charged) < 1e-6
                and t
            ),
            FLUSH_SECONDS + 5,
            f"the ledger to hold {charged} USD",
        )
        assert len(totals) == 1 and next(iter(totals)).startswith("day:")

        def status_budget() -> dict[str, Any] | None:
            body = kube_json(cluster, namespace, "agentdeployment", AGENT)
            budget = (body.get("status") or {}).get("budget") or {}
            if abs(float(budget.get("spentUSD", -1)) - charged) < 1e-6:
                return dict(body["status"])
            return None

        status = await asyncio.to_thread(
            wait_for, status_budget, FLUSH_SECONDS + 5, "status.budget to show the spend"
        )
        print(f"status.budget current {time.monotonic() - stopped:.2f}s after the last call")
        assert status["budget"]["exhausted"] is True
        assert status["phase"] == "BudgetExhausted"
        records = kube_json(cluster, namespace, "spendrecords")["items"]
        assert {r["spec"]["podUID"] for r in records} <= {g.uid for g in gateways} | {"settled"}
        for g in gateways:
            await g.stop()
        assert all("Traceback" not in g.output() for g in gateways)
        json.dumps(status)  # status is plain data
