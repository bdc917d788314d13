"""Fixtures of the hostile-input tests: the fakes the rendered gateway talks to.

No control plane: these tests start `agent-operator gateway` as a process with
the command the operator renders (harness.py), so they carry no `e2e` mark.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.hostile.harness import RecordingAgent, RecordingUpstream, Thief  # noqa: E402


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    """The fake provider; records the raw request target of every call."""
    async with RecordingUpstream() as fake:
        yield fake


@pytest.fixture
async def agent() -> AsyncIterator[RecordingAgent]:
    """The fake agent behind the inbound door; records raw targets and bodies."""
    async with RecordingAgent() as fake:
        yield fake


@pytest.fixture
async def thief() -> AsyncIterator[Thief]:
    """A listener that must never be reached: it counts connections and bytes."""
    async with Thief() as listener:
        yield listener
