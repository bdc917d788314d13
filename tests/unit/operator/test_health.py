"""/readyz: kopf's watch streams listed and streaming, and a healthy place in the peering."""

from __future__ import annotations

import inspect
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.clients import watching

from agent_operator.operator.health import (
    RECONNECT_GRACE_SECONDS,
    HealthServer,
    Readiness,
    WatchTracker,
    _KopfWatchHook,
    resource_name,
)
from agent_operator.operator.peering import PeeringMonitor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_resource_names_as_kubectl_spells_them() -> None:
    assert resource_name("apps", "deployments") == "deployments.apps"
    assert resource_name("", "secrets") == "secrets"


def test_a_watch_is_fine_once_listed_and_while_it_streams() -> None:
    clock = Clock()
    tracker = WatchTracker(clock)
    watch = ("secrets", "ns")
    assert tracker.problems([watch]) == ["secrets in ns: not listed yet"]
    tracker.listed(watch)
    assert tracker.problems([watch]) == []
    tracker.ended(watch)  # a 410 Gone or a dropped connection: re-listed at once
    clock.now += RECONNECT_GRACE_SECONDS
    assert tracker.problems([watch]) == []
    clock.now += 1
    assert tracker.problems([watch]) == ["secrets in ns: not watched"]
    tracker.listed(watch)
    tracker.ended(watch, "APIForbiddenError: forbidden")
    assert tracker.problems([watch]) == [
        "secrets in ns: watch failed: APIForbiddenError: forbidden"
    ]
    assert tracker.problems([("nodes", None)]) == ["nodes (all namespaces): not listed yet"]


def test_kopf_still_has_what_the_hook_wraps() -> None:
    # A tripwire for kopf upgrades: the hook relies on these internals.
    assert watching.Bookmark.LISTED
    assert "continuous_watch(" in inspect.getsource(watching.infinite_watch)
    assert set(inspect.signature(watching.continuous_watch).parameters) >= {
        "resource",
        "namespace",
    }


async def drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


async def test_the_hook_reports_listings_ends_and_failures() -> None:
    hook, tracker = _KopfWatchHook(), WatchTracker()
    hook.tracker = tracker
    resource = SimpleNamespace(group="agents.dev", plural="agentdeployments")
    watch = ("agentdeployments.agents.dev", "ns")
    failure: Exception | None = None

    async def original(**_: Any) -> AsyncIterator[Any]:
        yield {"type": None, "object": {}}
        assert not tracker.streams.get(watch, SimpleNamespace(streaming=False)).streaming
        yield watching.Bookmark.LISTED
        assert tracker.streams[watch].streaming
        if failure is not None:
            raise failure

    hook.original = original
    events = await drain(hook.continuous_watch(resource=resource, namespace="ns", settings=None))
    assert events[-1] is watching.Bookmark.LISTED
    assert not tracker.streams[watch].streaming and tracker.streams[watch].error is None

    failure = kopf_errors.APITooManyRequestsError({}, status=429, headers={})  # kopf retries these
    with pytest.raises(kopf_errors.APITooManyRequestsError):
        await drain(hook.continuous_watch(resource=resource, namespace="ns"))
    assert tracker.streams[watch].error is None
    failure = kopf_errors.APIForbiddenError({"message": "no access"}, status=403, headers={})
    with pytest.raises(kopf_errors.APIForbiddenError):
        await drain(hook.continuous_watch(resource=resource, namespace="ns"))
    assert tracker.problems([watch]) == [
        "agentdeployments.agents.dev in ns: watch failed: APIForbiddenError: 403 no access"
    ]


class FakeKube:
    def __init__(self, status: dict[str, Any] | None) -> None:
        self.status = status

    def get_path(self, path: str) -> dict[str, Any] | None:
        return None if self.status is None else {"status": self.status}


def record(priority: int) -> dict[str, object]:
    now = datetime.now(UTC) - timedelta(seconds=1)
    return {"priority": priority, "lifetime": 10, "lastseen": now.isoformat()}


def readiness(name: str | None, status: dict[str, Any] | None) -> tuple[Readiness, WatchTracker]:
    gate = PeeringMonitor(
        FakeKube(status),  # type: ignore[arg-type]
        name,
        "me",
        10,
        scopes=["ns"],
        mandatory=name is not None,
        lifetime=10,
    )
    gate.fetch()
    gate.evaluate()
    tracker = WatchTracker()
    return Readiness(tracker, gate, ["agentdeployments.agents.dev", "secrets"], ["ns"]), tracker


def test_ready_when_acting_needs_every_watch_listed() -> None:
    ready, tracker = readiness(None, None)  # standalone
    assert ready.check() == (
        False,
        "not ready: agentdeployments.agents.dev in ns: not listed yet; "
        "secrets in ns: not listed yet",
    )
    tracker.listed(("agentdeployments.agents.dev", "ns"))
    tracker.listed(("secrets", "ns"))
    assert ready.check() == (True, "ready: active")


def test_a_healthy_standby_is_ready_without_watches_of_its_own() -> None:
    ready, tracker = readiness("p", {"me": record(10), "boss": record(20)})
    assert ready.check() == (False, "not ready: kopfpeerings.kopf.dev in ns: not listed yet")
    tracker.listed(("kopfpeerings.kopf.dev", "ns"))  # what resumes us when the boss dies
    assert ready.check() == (True, "ready: standing by for boss")


def test_not_ready_without_a_place_in_the_peering() -> None:
    ready, tracker = readiness("p", None)
    tracker.listed(("kopfpeerings.kopf.dev", "ns"))
    assert ready.check() == (False, "not ready: KopfPeering ns/p not found")
    ready, tracker = readiness("p", {"boss": record(20)})
    tracker.listed(("kopfpeerings.kopf.dev", "ns"))
    assert ready.check() == (False, "not ready: own keep-alive not seen yet")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_the_health_port_serves_both_probes() -> None:
    ready, tracker = readiness(None, None)
    server = HealthServer(free_port(), ready, address="127.0.0.1")
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/healthz") as response:
                assert (response.status, await response.text()) == (200, "ok")
            async with session.get(base + "/readyz") as response:
                assert response.status == 503
                assert (await response.text()).startswith("not ready: ")
            tracker.listed(("agentdeployments.agents.dev", "ns"))
            tracker.listed(("secrets", "ns"))
            async with session.get(base + "/readyz") as response:
                assert (response.status, await response.text()) == (200, "ready: active")
    finally:
        await server.stop()
