"""A real redis-server per test, for the Redis spend store (killed and restarted at will)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.redis_server import RedisServer, free_port, running_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """No persistence: a restarted server is empty."""
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture
def unreachable_redis_url() -> str:
    """A Redis URL where nothing listens (connections are refused at once)."""
    return f"redis://127.0.0.1:{free_port()}/0"
