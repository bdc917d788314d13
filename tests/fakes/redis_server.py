"""A real redis-server on a loopback port, for the Redis spend store's tests.

`stop`/`start` keep the port, so clients see Redis go away and come back;
`pause`/`resume` freeze it (connections accepted, nothing answered).
By default nothing survives a restart; `persistent=True` turns on the
append-only file with an fsync per write (what production runs), so a
restart keeps every write that was answered.

A missing redis-server fails the test with a clear message, never skips it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

START_TIMEOUT_SECONDS = 10.0


class RedisServer:
    """One redis-server on 127.0.0.1:`port`, its files (if any) in `workdir`."""

    def __init__(self, binary: str, port: int, workdir: Path, *, persistent: bool = False) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.persistent = persistent
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until it answers PING (a persistent one has loaded its file)."""
        persistence = ("--appendonly", "yes", "--appendfsync", "always")
        self._process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--dir", str(self.workdir)),
                *(persistence if self.persistent else ("--appendonly", "no")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"redis-server did not start on port {self.port}")
                    time.sleep(0.02)
        finally:
            client.close()

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung Redis)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: it answers again, everything it was sent meanwhile included."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM and wait: a persistent server has written its file when this returns."""
        if self._process is not None and self._process.poll() is None:
            self.resume()  # a paused process would not handle SIGTERM
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_redis(workdir: Path, *, persistent: bool = False) -> Iterator[RedisServer]:
    """A started RedisServer on a free port, stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: the Redis spend store's tests need it "
            "(apt-get install redis-server; .ci/run installs it)",
            pytrace=False,
        )
    server = RedisServer(binary, free_port(), workdir, persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.stop()
