from __future__ import annotations

import io
import json
from pathlib import Path

from agent_operator.gateway.budget import Budget
from agent_operator.gateway.config import parse_settings
from agent_operator.gateway.spend import InMemorySpendStore
from agent_operator.gateway.state import GatewayState, Reloader
from agent_operator.gateway.telemetry import JsonLog, Metrics
from tests.fakes.volumes import KubeVolume, secret_files


def make(tmp: Path, with_client_keys: bool = True) -> tuple[GatewayState, Reloader, io.StringIO]:
    args = [
        "--provider",
        "openai",
        "--upstream-url",
        "http://127.0.0.1:1",
        "--credentials-dir",
        str(tmp / "creds"),
        "--budget-dir",
        str(tmp / "budget"),
    ]
    if with_client_keys:
        args += ["--client-keys-dir", str(tmp / "clients")]
    state = GatewayState(parse_settings(args), Budget(InMemorySpendStore(), lambda *a: None))
    out = io.StringIO()
    return state, Reloader(state, Metrics(), JsonLog(out)), out


def test_not_ready_until_everything_loaded(tmp_path: Path) -> None:
    state, reloader, out = make(tmp_path)
    reloader.poll()
    assert not state.ready
    creds = KubeVolume(tmp_path / "creds", secret_files("sk-1"))
    KubeVolume(tmp_path / "budget", {"budget.json": json.dumps({"limits": []})})
    reloader.poll()
    assert not state.ready  # client keys still missing
    KubeVolume(tmp_path / "clients", secret_files("c-1"))
    reloader.poll()
    assert state.ready
    assert state.snapshot.upstream_key is not None and state.snapshot.upstream_key.value == "sk-1"
    creds.update(secret_files("sk-2", "sk-1", "2999-01-01T00:00:00Z"))
    reloader.poll()
    assert state.snapshot.upstream_key.value == "sk-2"
    assert "sk-1" not in out.getvalue() and "sk-2" not in out.getvalue()


def test_broken_update_keeps_last_good_and_unchanged_files_are_not_reread(tmp_path: Path) -> None:
    state, reloader, out = make(tmp_path, with_client_keys=False)
    creds = KubeVolume(tmp_path / "creds", secret_files("sk-1"))
    budget = KubeVolume(
        tmp_path / "budget",
        {"budget.json": json.dumps({"limits": [{"period": "day", "maxUSD": 5}]})},
    )
    reloader.poll()
    reloads = out.getvalue().count('"event":"reloaded"')
    assert reloads == 2
    reloader.poll()
    assert out.getvalue().count('"event":"reloaded"') == reloads  # nothing changed
    creds.update({"current": ""})
    budget.update({"budget.json": "[]"})
    reloader.poll()
    assert state.snapshot.upstream_key is not None and state.snapshot.upstream_key.value == "sk-1"
    assert state.snapshot.budget.limits[0].max_usd == 5
    assert out.getvalue().count('"event":"reload_failed"') == 2
    reloader.poll()  # the broken version is not retried on every poll
    assert out.getvalue().count('"event":"reload_failed"') == 2


def test_wrong_typed_budget_is_a_reload_failure_not_a_crash(tmp_path: Path) -> None:
    state, reloader, out = make(tmp_path, with_client_keys=False)
    KubeVolume(tmp_path / "creds", secret_files("sk-1"))
    budget = KubeVolume(
        tmp_path / "budget",
        {"budget.json": json.dumps({"limits": [{"period": "day", "maxUSD": 5}]})},
    )
    reloader.poll()
    budget.update({"budget.json": json.dumps({"limits": [{"period": "day", "maxUSD": "x"}]})})
    reloader.poll()  # raised ValueError before, which ended the watcher task
    assert state.snapshot.budget.limits[0].max_usd == 5
    assert out.getvalue().count('"event":"reload_failed"') == 1


async def test_watcher_survives_an_unexpected_error(tmp_path: Path) -> None:
    import asyncio

    _state, reloader, out = make(tmp_path, with_client_keys=False)
    calls = 0
    real_poll = reloader.poll

    def poll() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        real_poll()

    reloader.poll = poll  # type: ignore[method-assign]
    task = asyncio.create_task(reloader.run(0.001))
    try:
        for _ in range(5000):  # bounded wait, not a timing assumption
            if calls >= 3:
                break
            await asyncio.sleep(0.001)
        assert calls >= 3 and not task.done()
    finally:
        task.cancel()
    assert "boom" in out.getvalue()


def test_a_hostile_staged_client_key_keeps_the_last_good_keys(tmp_path: Path) -> None:
    """`next` is new input: not UTF-8 or huge, it fails the reload, never the keys in use."""
    state, reloader, out = make(tmp_path)
    KubeVolume(tmp_path / "creds", secret_files("sk-1"))
    KubeVolume(tmp_path / "budget", {"budget.json": json.dumps({"limits": []})})
    clients = KubeVolume(tmp_path / "clients", {"current": "c-1", "next": "c-2"})
    reloader.poll()
    assert state.snapshot.client_keys is not None and state.snapshot.client_keys.verify("c-2", 0)
    clients.update({"current": "c-1", "next": "x"})
    # a Secret value is bytes: anything can be there
    ((tmp_path / "clients" / "..data").resolve() / "next").write_bytes(b"\xff\xfe not UTF-8")
    reloader.poll()
    assert out.getvalue().count('"event":"reload_failed"') == 1
    keys = state.snapshot.client_keys
    assert keys.verify("c-1", 0) and keys.verify("c-2", 0)
    huge = "k" * (1 << 20)
    clients.update({"current": "c-1", "next": huge})
    reloader.poll()
    keys = state.snapshot.client_keys
    assert keys is not None and keys.verify(huge, 0) and keys.verify("c-1", 0)
    assert huge[:32] not in out.getvalue() and "c-1" not in out.getvalue()
