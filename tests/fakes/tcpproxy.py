"""A TCP proxy with network faults switchable at runtime, for the operator's fault tests.

It listens on a loopback port and forwards every connection to one target
(the API server); TLS passes through untouched, so the client still checks
the server's certificate (keep the host 127.0.0.1 when the certificate is for
that address). It runs its own event loop in a background thread; every
method is called from the test's thread and takes effect before it returns::

    with TcpProxy("127.0.0.1", apiserver_port) as proxy:   # proxy.port, proxy.url
        proxy.delay(200)            # each chunk forwarded 200 ms late (both ways)
        proxy.drop()                # new connections: accepted, then closed at once
        proxy.reset()               # every open connection reset (RST); new ones too
        proxy.blackhole()           # open connections go silent; new ones too
        proxy.blackhole(new=False)  # only the open ones go silent, new ones pass
        proxy.pass_through()        # back to forwarding (silent connections stay so)

Modes (`Mode`) say what happens to connections from now on:

- `PASS`: forward both ways.
- `DELAY`: forward both ways, each chunk `delay_ms` late (order kept).
- `DROP`: a new connection is accepted and closed at once (FIN); open ones pass.
- `RESET`: on entering, every open connection is reset (SO_LINGER 0, so the
  kernel sends RST to both ends); a new connection is reset at once.
- `BLACKHOLE`: on entering, every open connection goes silent: it stays open
  but forwards nothing more, not even an end of stream (a NAT entry or a
  middlebox that vanished: neither end learns of it). A new connection is
  accepted and silent from the start. A silent connection stays silent for
  good, whatever the mode becomes; only a timeout at one of its ends (or
  `reset`) ends it.

`stats()` counts connections accepted, served (bytes came back from the
target), dropped, reset and silenced, so a test can tell that a fault really
met traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

_CHUNK = 65536
T = TypeVar("T")


class Mode(enum.Enum):
    """What happens to connections from now on (the module's docstring says each)."""

    PASS = "pass"
    DELAY = "delay"
    DROP = "drop"
    RESET = "reset"
    BLACKHOLE = "blackhole"


@dataclass
class Stats:
    """Connections seen by the proxy (counts since it started)."""

    accepted: int = 0
    served: int = 0  # at least one byte came back from the target
    dropped: int = 0
    reset: int = 0
    silenced: int = 0


@dataclass(eq=False)
class _Connection:
    """One client connection and its upstream twin."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    silent: bool = False
    served: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close a connection with RST rather than FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`, with faults on demand."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = 0
        self.mode = Mode.PASS
        self.delay_ms = 0.0
        self._stats = Stats()
        self._open: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """https://host:port of the proxy (the target speaks TLS)."""
        return f"https://{self.listen_host}:{self.port}"

    # -- life cycle (test thread) ---------------------------------------------------------

    def start(self) -> TcpProxy:
        """Start the event loop thread and listen on a free port."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="tcpproxy", daemon=True)
        self._thread.start()
        self._server = self._run(
            asyncio.start_server(self._accept, self.listen_host, 0, backlog=1024)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Reset every open connection, stop listening and end the thread."""
        if self._loop is None:
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults (test thread) -------------------------------------------------------------

    def pass_through(self) -> None:
        """Forward everything again (connections already silent stay silent)."""
        self._set(Mode.PASS)

    def delay(self, ms: float) -> None:
        """Forward each chunk `ms` milliseconds late, both ways."""
        self._set(Mode.DELAY, ms)

    def drop(self) -> None:
        """Accept new connections and close them at once; open ones still pass."""
        self._set(Mode.DROP)

    def reset(self) -> int:
        """Reset (RST) every open connection, and each new one while in this mode;
        returns how many open connections were reset."""
        return self._set(Mode.RESET)

    def blackhole(self, new: bool = True) -> int:
        """Silence every open connection for good; with `new`, connections made from
        now on are silent too, else they pass. Returns how many were silenced."""
        return self._set(Mode.BLACKHOLE if new else Mode.PASS, silence=True)

    def stats(self) -> Stats:
        """A copy of the counters."""
        return self._run(self._copy_stats())

    def open_connections(self) -> int:
        return self._run(self._count_open())

    # -- inside (event loop thread) -------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "the proxy is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def _set(self, mode: Mode, delay_ms: float = 0.0, silence: bool = False) -> int:
        return self._run(self._switch(mode, delay_ms, silence or mode is Mode.BLACKHOLE))

    async def _switch(self, mode: Mode, delay_ms: float, silence: bool) -> int:
        self.mode, self.delay_ms = mode, delay_ms
        affected = 0
        for conn in list(self._open):
            if mode is Mode.RESET:
                self._close(conn, fault=True)
                affected += 1
            elif silence and not conn.silent:
                conn.silent = True
                self._stats.silenced += 1
                affected += 1
        return affected

    async def _copy_stats(self) -> Stats:
        return Stats(**vars(self._stats))

    async def _count_open(self) -> int:
        return len(self._open)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._open):
            self._close(conn, fault=False)
        if self._server is not None:
            await self._server.wait_closed()

    def _close(self, conn: _Connection, fault: bool) -> None:
        """Reset both ends of a connection; `fault`: one of ours (counted)."""
        _abort(conn.client)
        if conn.upstream is not None:
            _abort(conn.upstream)
        if fault:
            self._stats.reset += 1
        self._open.discard(conn)
        conn.ended.set()
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._stats.accepted += 1
        conn = _Connection(writer)
        if self.mode is Mode.DROP:
            self._stats.dropped += 1
            writer.close()
            return
        if self.mode is Mode.RESET:
            self._stats.reset += 1
            _abort(writer)
            return
        if self.mode is Mode.BLACKHOLE:
            conn.silent = True
            self._stats.silenced += 1
        self._open.add(conn)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._open.discard(conn)
            _abort(writer)
            return
        if conn.ended.is_set():  # reset while connecting
            _abort(up_writer)
            return
        conn.upstream = up_writer
        conn.tasks = [
            asyncio.create_task(self._pump(conn, reader, up_writer, upstream=False)),
            asyncio.create_task(self._pump(conn, up_reader, writer, upstream=True)),
        ]
        # Either direction ends on its own; the connection ends when both have.
        await asyncio.gather(*conn.tasks, return_exceptions=True)
        if conn in self._open:
            self._open.discard(conn)
            conn.ended.set()
            for end in (writer, up_writer):
                end.close()

    async def _pump(
        self,
        conn: _Connection,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        upstream: bool,
    ) -> None:
        """Copy one direction until its end of stream. Once the connection is silent,
        read and swallow: neither data nor the end of stream is passed on."""
        try:
            while True:
                data = await source.read(_CHUNK)
                if data and self.mode is Mode.DELAY and not conn.silent:
                    await asyncio.sleep(self.delay_ms / 1000)
                if conn.silent:
                    if not data:
                        return
                    continue
                if not data:
                    with contextlib.suppress(OSError, RuntimeError):
                        sink.write_eof()  # a half-close passes on as one
                    return
                if upstream and not conn.served:
                    conn.served = True
                    self._stats.served += 1
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            # one end went away abruptly: so does the other, unless the path is dead
            if not conn.silent:
                self._close(conn, fault=False)
