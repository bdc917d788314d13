"""Zero-downtime key rotation: 10 upstream-key and 10 client-key rotations
under continuous load on both doors of the real gateway process.

Each rotation is done the way the operator does it (SPEC section 5) and
reaches the gateway the way the kubelet delivers it (`KubeVolume.update`
swaps `..data`):

- upstream key: mint the new key at the provider (valid there first), swap
  the credentials volume to current=new, previous=old,
  previous-expires-at=now+grace; at the end of the grace revoke the old key
  at the provider; a little later drop `previous` from the volume;
- client key: swap the client-keys volume the same way; every caller moves
  to the new key at its own random moment inside the grace (a caller learns
  the new key some time after the Secret changed); after the grace one probe
  with the old key must be refused (401, expected); later `previous` is
  dropped.

Load for the whole test: callers on the inbound door (client key ->
gateway -> fake agent; JSON echo and SSE) and the agent's side on the
outbound door (gateway injects the key -> fake provider that accepts only
the live keys; streamed and not). Every load request must get 200 and a
complete body, and the provider must only ever have seen live keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.e2e.gateway.harness import CHAT, UPSTREAM_KEY, Gateway, run_gateway
from tests.fakes.agent import FakeAgent
from tests.fakes.provider_formats import completion_words
from tests.fakes.upstream import FakeUpstream
from tests.fakes.volumes import secret_files

pytestmark = pytest.mark.timeout(120)

ROTATIONS = 10  # of each kind
GRACE = 1.5  # seconds; the harness polls the mounted files every 0.1 s
# As the operator does it, a new client key is first staged (file `next`:
# accepted by the gateway, not yet given to callers) for STAGE seconds, then
# promoted to `current`. Callers, who read `current`, move to the new key at a
# random moment in [0, GRACE - SWITCH_MARGIN] after the promotion: even at
# once, the gateway has had the key for STAGE (several polls). Not later: a
# request sent with the old key just before the expiry must still reach the
# gateway before it, on a busy machine.
STAGE = 0.4
SWITCH_EARLIEST = 0.0
SWITCH_MARGIN = 0.5
INBOUND_CALLERS = 8
OUTBOUND_CALLERS = 8
MIN_REQUESTS_PER_DOOR = 500
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
EXPECTED_TEXT = "".join(completion_words(10))


def rfc3339(moment: datetime) -> str:
    """UTC, milliseconds, `Z`: how the operator writes previous-expires-at."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Caller:
    """One caller of the agent: knows one client key at a time."""

    key: str


@dataclass
class Failure:
    at: float  # seconds since the load started
    door: str
    mode: str
    detail: str


@dataclass
class Load:
    """What the load saw: counts per (door, mode), failures, latencies."""

    started: float = field(default_factory=time.monotonic)
    ok: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    # (sent at, key) of every inbound request that got 200
    inbound_ok: list[tuple[float, str]] = field(default_factory=list)

    def since(self, moment: float) -> float:
        return round(moment - self.started, 3)

    def fail(self, door: str, mode: str, sent: float, detail: str) -> None:
        self.failures.append(Failure(self.since(sent), door, mode, detail[:300]))

    def total(self, door: str) -> int:
        return sum(n for (d, _), n in self.ok.items() if d == door)


# ---------------------------------------------------------------- one request each


async def inbound_json(session: aiohttp.ClientSession, gw: Gateway, key: str, n: int) -> str | None:
    """POST /chat with the caller's key; the fake agent echoes what it got."""
    body = {"q": n}
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(gw.inbound + "/chat", json=body, headers=headers) as r:
        raw = await r.read()
        if r.status != 200:
            return f"status {r.status}: {raw[:200]!r}"
    echo = json.loads(raw)
    if echo["path"] != "/chat" or json.loads(echo["body"]) != body:
        return f"wrong echo {echo!r}"
    if "authorization" in echo["headers"]:
        return "client key passed to the agent"
    return None


async def inbound_stream(session: aiohttp.ClientSession, gw: Gateway, key: str) -> str | None:
    """GET /stream?n=5 with the caller's key: 5 SSE events, in order, then EOF."""
    headers = {"Authorization": f"Bearer {key}"}
    async with session.get(gw.inbound + "/stream?n=5", headers=headers) as r:
        raw = await r.read()
        if r.status != 200:
            return f"status {r.status}: {raw[:200]!r}"
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    if events != [f"data: {json.dumps({'i': i})}".encode() for i in range(5)]:
        return f"incomplete stream {raw[:300]!r}"
    return None


async def outbound_json(session: aiohttp.ClientSession, gw: Gateway) -> str | None:
    # what an SDK would send: the placeholder key the gateway must replace
    headers = {"Authorization": "Bearer injected-by-gateway"}
    url = gw.outbound + "/v1/chat/completions"
    async with session.post(url, json=CHAT, headers=headers) as r:
        raw = await r.read()
        if r.status != 200:
            return f"status {r.status}: {raw[:200]!r}"
    body = json.loads(raw)
    choice = body["choices"][0]
    if choice["message"]["content"] != EXPECTED_TEXT or choice["finish_reason"] != "stop":
        return f"incomplete completion {raw[:300]!r}"
    if body["usage"]["completion_tokens"] != 10:
        return f"wrong usage {body['usage']!r}"
    return None


async def outbound_stream(
    session: aiohttp.ClientSession, gw: Gateway, with_usage: bool
) -> str | None:
    payload: dict[str, Any] = {**CHAT, "stream": True}
    if with_usage:
        payload["stream_options"] = {"include_usage": True}
    headers = {"Authorization": "Bearer injected-by-gateway"}
    url = gw.outbound + "/v1/chat/completions"
    async with session.post(url, json=payload, headers=headers) as r:
        raw = await r.read()
        if r.status != 200:
            return f"status {r.status}: {raw[:200]!r}"
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    if not events or events[-1] != b"data: [DONE]":
        return f"stream without [DONE] {raw[-300:]!r}"
    chunks = [json.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    usage = [c["usage"] for c in chunks if not c["choices"]]
    if text != EXPECTED_TEXT or finish[-1] != "stop":
        return f"incomplete stream {raw[-300:]!r}"
    if with_usage and (len(usage) != 1 or usage[0]["completion_tokens"] != 10):
        return f"usage chunk missing {raw[-300:]!r}"
    return None


# ---------------------------------------------------------------- load workers


async def timed(
    load: Load, door: str, mode: str, call: Callable[[], Awaitable[str | None]]
) -> None:
    sent = time.monotonic()
    try:
        error = await call()
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, IndexError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    load.latencies.append(time.monotonic() - sent)
    if error is None:
        load.ok[door, mode] += 1
    else:
        load.fail(door, mode, sent, error)


async def inbound_worker(gw: Gateway, caller: Caller, load: Load, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        n = 0
        while not stop.is_set():
            n += 1
            key = caller.key  # what this caller knows right now
            sent = time.monotonic()
            streaming = n % 3 == 0
            mode = "stream" if streaming else "json"
            try:
                if streaming:
                    error = await inbound_stream(session, gw, key)
                else:
                    error = await inbound_json(session, gw, key, n)
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            load.latencies.append(time.monotonic() - sent)
            if error is None:
                load.ok["inbound", mode] += 1
                load.inbound_ok.append((sent, key))
            else:
                load.fail("inbound", mode, sent, f"key {key}: {error}")


async def outbound_worker(gw: Gateway, load: Load, stop: asyncio.Event, index: int) -> None:
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        n = index
        while not stop.is_set():
            n += 1
            if n % 3 == 0:
                await timed(load, "outbound", "json", lambda: outbound_json(session, gw))
            else:
                usage = n % 3 == 1
                mode = "stream+usage" if usage else "stream"
                await timed(load, "outbound", mode, lambda u=usage: outbound_stream(session, gw, u))


# ---------------------------------------------------------------- rotations


@dataclass
class KeyLife:
    """When a key was valid at the fake provider (monotonic seconds)."""

    key: str
    valid_from: float
    valid_until: float = float("inf")


@dataclass
class ClientRotation:
    old: str
    new: str
    swapped: float  # monotonic
    expires: float  # monotonic moment matching previous-expires-at


async def rotate_upstream_keys(
    gw: Gateway, up: FakeUpstream, lives: list[KeyLife], rng: random.Random
) -> None:
    old = UPSTREAM_KEY
    for i in range(1, ROTATIONS + 1):
        new = f"sk-upstream-rotated-{i:02d}"
        # 1. mint at the provider: the new key works there before anyone uses it
        assert up.valid_keys is not None
        up.valid_keys = up.valid_keys | {new}
        lives.append(KeyLife(new, time.monotonic()))
        await asyncio.sleep(0.05)
        # 2. the Secret (and, via the kubelet, the volume) gets new + old until the grace ends
        expires_at = rfc3339(datetime.now(UTC) + timedelta(seconds=GRACE))
        gw.credentials.update(secret_files(new, old, expires_at))
        await asyncio.sleep(GRACE)
        # 3. grace over: the old key is revoked at the provider
        up.valid_keys = up.valid_keys - {old}
        next(life for life in lives if life.key == old).valid_until = time.monotonic()
        await asyncio.sleep(rng.uniform(0.2, 0.4))
        # 4. ... and dropped from the Secret
        gw.credentials.update(secret_files(new))
        await asyncio.sleep(rng.uniform(0.2, 0.5))
        old = new


async def switch_later(caller: Caller, key: str, delay: float) -> None:
    await asyncio.sleep(delay)
    caller.key = key


async def rotate_client_keys(
    gw: Gateway,
    callers: list[Caller],
    rotations: list[ClientRotation],
    expired_probes: list[tuple[int, str]],
    rng: random.Random,
) -> None:
    assert gw.client_keys is not None
    old = callers[0].key
    await asyncio.sleep(0.7)  # out of phase with the upstream rotations
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as probe:
        for i in range(1, ROTATIONS + 1):
            new = f"client-key-rotated-{i:02d}"
            gw.client_keys.update({"current": old, "next": new})  # staged
            await asyncio.sleep(STAGE)
            expires_at = datetime.now(UTC) + timedelta(seconds=GRACE)
            swapped = time.monotonic()
            gw.client_keys.update(secret_files(new, old, rfc3339(expires_at)))
            rotations.append(ClientRotation(old, new, swapped, swapped + GRACE))
            # each caller learns the new key at its own moment within the grace
            switches = [
                asyncio.create_task(
                    switch_later(caller, new, rng.uniform(SWITCH_EARLIEST, GRACE - SWITCH_MARGIN))
                )
                for caller in callers
            ]
            await asyncio.gather(*switches)
            assert all(caller.key == new for caller in callers)
            await asyncio.sleep(max(0.0, swapped + GRACE + 0.1 - time.monotonic()))
            # grace over: the old key is refused (this 401 is expected, not load)
            headers = {"Authorization": f"Bearer {old}"}
            async with probe.post(gw.inbound + "/chat", json={}, headers=headers) as r:
                body = await r.read()
                expired_probes.append((r.status, body.decode(errors="replace")))
            await asyncio.sleep(rng.uniform(0.1, 0.3))
            gw.client_keys.update(secret_files(new))  # dropped from the Secret
            await asyncio.sleep(rng.uniform(0.2, 0.5))
            old = new


# ---------------------------------------------------------------- the test


async def test_ten_rotations_of_each_key_under_load_fail_no_request(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    client_key = "client-key-initial"
    async with FakeUpstream(max_recorded=None) as up, FakeAgent() as agent:
        up.valid_keys = {UPSTREAM_KEY}
        async with run_gateway(
            tmp_path,
            up.url + "/v1",
            agent_url=agent.url,
            client_keys=secret_files(client_key),
        ) as gw:
            reloads_before = {
                v: await gw.metric("agent_gateway_config_reloads_total", volume=v, result="ok")
                for v in ("credentials", "client-keys")
            }
            callers = [Caller(client_key) for _ in range(INBOUND_CALLERS)]
            lives = [KeyLife(UPSTREAM_KEY, 0.0)]
            rotations: list[ClientRotation] = []
            expired_probes: list[tuple[int, str]] = []
            load = Load()
            stop = asyncio.Event()
            workers = [
                *(asyncio.create_task(inbound_worker(gw, c, load, stop)) for c in callers),
                *(
                    asyncio.create_task(outbound_worker(gw, load, stop, i))
                    for i in range(OUTBOUND_CALLERS)
                ),
            ]
            try:
                await asyncio.sleep(0.5)  # load first, then rotate under it
                await asyncio.gather(
                    rotate_upstream_keys(gw, up, lives, rng),
                    rotate_client_keys(gw, callers, rotations, expired_probes, rng),
                )
                await asyncio.sleep(0.5)  # load goes on after the last rotation
            finally:
                stop.set()
                await asyncio.gather(*workers)
            elapsed = time.monotonic() - load.started

            reloads = {
                v: await gw.metric("agent_gateway_config_reloads_total", volume=v, result="ok")
                - reloads_before[v]
                for v in ("credentials", "client-keys")
            }
            reload_errors = await gw.metric("agent_gateway_config_reloads_total", result="error")
            latencies = sorted(load.latencies)
            print(
                f"\nseed={seed} elapsed={elapsed:.1f}s ok={dict(load.ok)} "
                f"inbound={load.total('inbound')} outbound={load.total('outbound')} "
                f"failures={len(load.failures)} "
                f"p50={latencies[len(latencies) // 2] * 1000:.1f}ms "
                f"p99={latencies[int(len(latencies) * 0.99)] * 1000:.1f}ms "
                f"max={latencies[-1] * 1000:.1f}ms "
                f"upstream_requests={len(up.requests)} reloads={reloads}"
            )
            # log times are epoch seconds: put them on the load's clock
            epoch_offset = time.time() - time.monotonic()
            reload_lines = [
                (load.since(line["ts"] - epoch_offset), line["event"], line.get("volume"))
                for line in gw.logs()
                if line.get("event") in ("reloaded", "reload_failed")
            ]
            if load.failures:
                pytest.fail(
                    f"{len(load.failures)} load requests failed (seed {seed}), by door and mode: "
                    f"{dict(Counter((f.door, f.mode) for f in load.failures))}\n"
                    + "\n".join(
                        f"  t={f.at:.3f}s {f.door}/{f.mode}: {f.detail}" for f in load.failures[:15]
                    )
                    + f"\nrotations (t of swap): {[load.since(r.swapped) for r in rotations]}"
                    + f"\ngateway reloads (t): {reload_lines}"
                )

            # not vacuous: both doors and every mode carried real traffic
            assert load.total("inbound") >= MIN_REQUESTS_PER_DOOR, load.ok
            assert load.total("outbound") >= MIN_REQUESTS_PER_DOOR, load.ok
            assert all(load.ok[mode] > 0 for mode in [("inbound", "json"), ("inbound", "stream")])
            assert all(load.ok["outbound", mode] > 0 for mode in ("json", "stream", "stream+usage"))

            # the provider only ever saw keys that were live at that instant ...
            life = {k.key: k for k in lives}
            seen = Counter[str]()
            dead = []
            for request in up.requests:
                key = request.headers["authorization"].removeprefix("Bearer ")
                seen[key] += 1
                k = life.get(key)
                if k is None or not k.valid_from <= request.received_at < k.valid_until:
                    dead.append((load.since(request.received_at), key))
            assert not dead, f"the provider saw dead keys: {dead[:20]}"
            # ... and every minted key was actually used: each swap reached the gateway
            assert all(seen[k.key] > 0 for k in lives), seen
            assert len(up.requests) == load.total("outbound")  # no retries, no strays
            outbound_logs = gw.request_logs("outbound")
            assert Counter(r["status"] for r in outbound_logs) == {200: load.total("outbound")}

            # client keys: both keys served during every grace, the old one refused after
            for rotation in rotations:
                old_used = sum(
                    1
                    for sent, key in load.inbound_ok
                    if key == rotation.old and rotation.swapped < sent
                )
                new_used = sum(
                    1
                    for sent, key in load.inbound_ok
                    if key == rotation.new and sent < rotation.expires
                )
                assert old_used > 0 and new_used > 0, (rotation, old_used, new_used)
            assert len(expired_probes) == ROTATIONS
            for status, body in expired_probes:
                assert status == 401, body
                assert json.loads(body)["error"]["type"] == "unauthorized"
            inbound_codes = Counter(r["status"] for r in gw.request_logs("inbound"))
            assert inbound_codes == {200: load.total("inbound"), 401: ROTATIONS}
            assert all("authorization" not in r.headers for r in agent.requests)

            # the gateway reloaded every swap (new key in, old key dropped), never failed to
            assert reloads["credentials"] >= 2 * ROTATIONS, reloads
            assert reloads["client-keys"] >= 2 * ROTATIONS, reloads
            assert reload_errors == 0


# ---------------------------------------------------------------- kubelet mid-update


def kubelet_update_with_pause(path: Path, files: dict[str, str], pause_after: str) -> None:
    """What `KubeVolume.update` (and the kubelet's atomic writer) does, step by
    step, holding one intermediate state for 0.5 s: after the `..data` rename
    (step 8) the links of keys new to the Secret (step 9) do not exist yet.
    Blocking: run it in a thread."""
    data_dir = f"..kubelet_{time.monotonic_ns()}"
    (path / data_dir).mkdir()
    for name, content in files.items():
        (path / data_dir / name).write_text(content, encoding="utf-8")
    old = os.readlink(path / "..data")
    os.symlink(data_dir, path / "..data_tmp")
    os.rename(path / "..data_tmp", path / "..data")  # step 8: the atomic swap
    if pause_after == "..data":
        time.sleep(0.5)
    for name in files:  # step 9: a link for each key that is new to the Secret
        if not (path / name).is_symlink():
            os.symlink(f"..data/{name}", path / name)
            if pause_after == name:
                time.sleep(0.5)
    shutil.rmtree(path / old)  # step 11


@pytest.mark.parametrize("pause_after", ["..data", "previous"])
async def test_old_client_key_valid_while_kubelet_adds_previous(
    tmp_path: Path, pause_after: str
) -> None:
    async with FakeUpstream() as up, FakeAgent() as agent:
        keys = secret_files("client-old")
        async with run_gateway(tmp_path, up.url, agent_url=agent.url, client_keys=keys) as gw:
            assert gw.client_keys is not None
            expires_at = rfc3339(datetime.now(UTC) + timedelta(seconds=60))
            statuses: Counter[int] = Counter()
            stop = asyncio.Event()

            async def caller_on_old_key() -> None:
                headers = {"Authorization": "Bearer client-old"}
                async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
                    while not stop.is_set():
                        async with session.post(
                            gw.inbound + "/chat", json={}, headers=headers
                        ) as r:
                            await r.read()
                            statuses[r.status] += 1
                        await asyncio.sleep(0.01)

            task = asyncio.create_task(caller_on_old_key())
            await asyncio.sleep(0.3)
            # the rotation: new current, the old key valid for another 60 s
            files = secret_files("client-new", "client-old", expires_at)
            await asyncio.to_thread(
                kubelet_update_with_pause, gw.client_keys.path, files, pause_after
            )
            await asyncio.sleep(0.5)
            stop.set()
            await task
            assert statuses[200] > 0 and statuses[401] == 0, statuses
