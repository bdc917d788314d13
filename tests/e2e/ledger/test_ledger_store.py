"""The kubernetes spend store against the real API server (the admin's token: the
identity's limits are tested in test_gateway_identity.py), and against hostile
answers a real server cannot be made to give."""

from __future__ import annotations

import asyncio
import io
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from tests.e2e.ledger.harness import kube_json

from agent_operator.gateway.kubeapi import KubeAPI
from agent_operator.gateway.ledger import Journal, KubernetesSpendStore
from agent_operator.gateway.spend import Hold, StoreUnavailable
from agent_operator.gateway.telemetry import JsonLog, Metrics
from agent_operator.ledger import (
    SpendRecordSpec,
    parse_record,
    period_key,
    record_body,
    record_name,
    totals,
)
from localcluster import Cluster

pytestmark = pytest.mark.e2e

AGENT = "solo"


@pytest.fixture
def account(cluster: Cluster, agent_crd: None, tmp_path: Path) -> Path:
    directory = tmp_path / "admin-account"
    directory.mkdir()
    shutil.copy(cluster.pki / "admin.token", directory / "token")
    shutil.copy(cluster.pki / "ca.crt", directory / "ca.crt")
    return directory


def make_store(
    server: str,
    account: Path,
    namespace: str,
    pod_uid: str,
    journal: Journal | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[KubernetesSpendStore, io.StringIO]:
    out = io.StringIO()
    extra = {"clock": clock} if clock is not None else {}
    store = KubernetesSpendStore(
        KubeAPI(server, account, namespace),
        agent=AGENT,
        agent_uid="",
        pod_name=f"pod-{pod_uid}",
        pod_uid=pod_uid,
        flush_seconds=0.5,
        metrics=Metrics(),
        log=JsonLog(out),
        journal=journal,
        **extra,
    )
    return store, out


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def key_now() -> str:
    import time

    return period_key("day", time.time())


async def charge(store: KubernetesSpendStore, usd: float, limit: float = 100.0) -> None:
    hold = await store.admit([key_now()], [limit], 0.0)
    assert isinstance(hold, Hold)
    store.settle(hold, usd)


def records(cluster: Cluster, namespace: str) -> dict[str, float]:
    items = kube_json(cluster, namespace, "spendrecords")["items"]
    specs = [s for s in (parse_record(i) for i in items) if s is not None]
    return totals(specs, AGENT)


async def test_replicas_see_each_other_and_a_restart_carries_on(
    cluster: Cluster, namespace: str, account: Path
) -> None:
    server = cluster.server()
    one, _ = make_store(server, account, namespace, "uid-one")
    two, _ = make_store(server, account, namespace, "uid-two")
    await one.start()
    await two.start()
    await until(lambda: one.ready and two.ready)
    await charge(one, 0.4)
    await charge(two, 0.7)
    key = key_now()
    await until(
        lambda: one.spent(key) == pytest.approx(1.1) and two.spent(key) == pytest.approx(1.1)
    )
    # the limit is the shared total: a third replica's view refuses at once
    assert await one.admit([key], [1.0], 0.0) == 0
    await one.close()
    await two.close()
    assert records(cluster, namespace)[key] == pytest.approx(1.1)
    # the same pod again (a container restart): its own record is read back first
    again, _ = make_store(server, account, namespace, "uid-one")
    await again.start()
    await until(lambda: again.ready)
    assert again.spent(key) == pytest.approx(1.1)
    await charge(again, 0.1)
    await again.close()
    assert records(cluster, namespace)[key] == pytest.approx(1.2)
    assert len(kube_json(cluster, namespace, "spendrecords")["items"]) == 2  # one per pod


async def test_a_killed_process_leaves_its_unwritten_spend_in_the_journal(
    cluster: Cluster, namespace: str, account: Path, tmp_path: Path
) -> None:
    server = cluster.server()
    (tmp_path / "journal").mkdir()
    store, _ = make_store(server, account, namespace, "uid-j", Journal(tmp_path / "journal"))
    await store.start()
    await until(lambda: store.ready)
    for task in store._tasks:  # as dead as kill -9: nothing more is written
        task.cancel()
    await charge(store, 0.25)
    await charge(store, 0.5)
    key = key_now()
    assert key not in records(cluster, namespace)
    reborn, _ = make_store(server, account, namespace, "uid-j", Journal(tmp_path / "journal"))
    await reborn.start()
    await until(lambda: records(cluster, namespace).get(key) == pytest.approx(0.75))
    assert reborn.spent(key) == pytest.approx(0.75)
    await until(lambda: (tmp_path / "journal" / "unwritten").stat().st_size == 0)
    await reborn.close()
    await store.api.close()


async def test_a_record_changed_under_the_writer_costs_a_reread_never_spend(
    cluster: Cluster, namespace: str, account: Path
) -> None:
    """Its record moved on (a lost answer, a label added by someone): the write
    conflicts on resourceVersion, the store reads the version back and writes
    again, and never writes less than the record holds."""
    key = key_now()
    spec = SpendRecordSpec(
        agent=AGENT, period="day", period_key=key, pod_name="p", pod_uid="uid-c", spent_usd=5.0
    )
    cluster.kubectl(
        "-n", namespace, "create", "-f", "-", input=json.dumps(record_body(spec, namespace, ""))
    )
    store, _ = make_store(cluster.server(), account, namespace, "uid-c")
    await store.start()
    await until(lambda: store.ready)
    assert store.spent(key) == 5.0  # its own record, read back
    name = record_name(AGENT, key, "uid-c")
    cluster.kubectl("-n", namespace, "label", "spendrecord", name, "touched=yes")
    await charge(store, 1.0)
    await until(lambda: records(cluster, namespace).get(key) == pytest.approx(6.0))
    await store.close()
    record = kube_json(cluster, namespace, "spendrecord", name)
    assert record["spec"]["spentUSD"] == 6.0  # the writer owns its record whole


async def test_fails_closed_before_the_first_read_and_when_the_api_goes_quiet(
    cluster: Cluster, namespace: str, account: Path
) -> None:
    now = [0.0]
    store, out = make_store(
        "https://127.0.0.1:9", account, namespace, "uid-x", clock=lambda: now[0]
    )
    await store.start()
    with pytest.raises(StoreUnavailable):
        await store.admit([key_now()], [1.0], 0.0)
    assert not store.ready
    await store.close()
    # a store that was reading, then hears nothing for STALE_AFTER_SECONDS
    live, _ = make_store(cluster.server(), account, namespace, "uid-y", clock=lambda: now[0])
    await live.start()
    await until(lambda: live.ready)
    assert isinstance(await live.admit([key_now()], [1.0], 0.0), Hold)
    now[0] += 3600
    with pytest.raises(StoreUnavailable, match="not answered"):
        await live.admit([key_now()], [1.0], 0.0)
    await live.close()
    assert "sk-" not in out.getvalue()


class HostileAPI:
    """Answers a real API server never gives: the store must stay closed, never crash."""

    def __init__(self, answer: Callable[[web.Request], web.StreamResponse]) -> None:
        self.answer = answer
        self.hits = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        return self.answer(request)


@pytest.mark.parametrize(
    "answer",
    [
        lambda r: web.Response(text="not json"),
        lambda r: web.Response(body=b"[" * 100_000, content_type="application/json"),
        lambda r: web.Response(
            body=json.dumps({"items": "x", "metadata": {}}), content_type="application/json"
        ),
        lambda r: web.Response(status=302, headers={"Location": "http://127.0.0.1:1/steal"}),
        lambda r: web.Response(body=b"{" + b" " * (17 * 1024 * 1024) + b"}"),
        lambda r: web.Response(
            body=json.dumps(
                {
                    "items": [{"metadata": {"name": "a"}, "spec": {"spentUSD": math.inf}}],
                    "metadata": {"resourceVersion": "1"},
                }
            ).replace("Infinity", "1e999"),
            content_type="application/json",
        ),
    ],
    ids=["not-json", "deep-nesting", "wrong-types", "redirect", "huge", "absurd-number"],
)
async def test_hostile_api_answers_keep_the_store_closed_or_sane(
    answer: Callable[[web.Request], web.StreamResponse], tmp_path: Path, account: Path
) -> None:
    hostile = HostileAPI(answer)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hostile.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    store, out = make_store(f"http://127.0.0.1:{port}", account, "ns", "uid-h")
    try:
        await store.start()
        await until(lambda: hostile.hits >= 1)
        await asyncio.sleep(0.3)
        if store.ready:  # only a well-formed list can load it: the absurd number is ignored
            assert store.spent(key_now()) == 0.0
        else:
            with pytest.raises(StoreUnavailable):
                await store.admit([key_now()], [1.0], 0.0)
        assert all(task.done() is False for task in store._tasks)  # still trying, alive
    finally:
        await store.close()
        await runner.cleanup()
    assert (account / "token").read_text().strip() not in out.getvalue()
