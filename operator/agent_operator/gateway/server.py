"""The listeners of both doors: aiohttp's low-level server, held against slow and many clients.

aiohttp has no header timeout and no connection cap: a client that sends its
headers a byte at a time (slowloris) holds a connection for ever, and enough
of them exhaust the process. Each listener here caps its open connections
(the excess is answered 503 and closed at once) and closes a connection whose
request headers, once begun, are not complete within the header timeout.
A new connection gets the header timeout for its first request; between
requests an idle keep-alive connection is closed after 75 s (aiohttp's
default is an hour, which would let idle clients fill the cap).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from agent_operator.gateway.telemetry import JsonLog
from agent_operator.sidecar import Listen

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
# aiohttp's own cap on bodies it buffers; ours (gateway/bodies.py) are smaller
CLIENT_MAX_SIZE = 64 * 1024 * 1024
SHUTDOWN_GRACE_SECONDS = 10.0
KEEPALIVE_SECONDS = 75.0  # longer than the idle timeouts of common HTTP client pools
LINGER_SECONDS = 1.0
_REFUSAL_BODY = b'{"error":{"message":"too many connections","type":"overloaded"}}'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)
_LOG_EVERY_SECONDS = 10.0


class _Protocol(RequestHandler):
    """One connection: refused past the cap; a header deadline once a request begins."""

    _header_timer: asyncio.TimerHandle | None = None
    _refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._manager
        if isinstance(server, GuardedServer) and server.full():
            # answered and closed before aiohttp starts a handler task for it
            self._refused = True
            # uvloop's transports are not asyncio.Transport subclasses: cast, not assert
            transport = cast(asyncio.Transport, transport)
            transport.write(_REFUSAL)
            transport.close()
            server.count_refusal()
            return
        super().connection_made(transport)
        # a new connection must send its first request's headers in time: a
        # silent one would otherwise hold a slot of the cap for ever
        self._start_header_timer()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's message quotes the raw line it refused (an Authorization
        # header, say): the client gets the status phrase only
        return super().handle_error(request, status, exc, HTTPStatus(status).phrase)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self._cancel_header_timer()  # headers complete: the handler takes over
        elif self._header_timer is None and self._awaiting_headers():
            self._start_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return  # never started: nothing of aiohttp's to clean up
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _awaiting_headers(self) -> bool:
        return (
            not self._request_in_progress
            and not self._messages
            and not self._force_close
            and not self._close
        )

    def _start_header_timer(self) -> None:
        server = self._manager
        if isinstance(server, GuardedServer):
            self._header_timer = self._loop.call_later(
                server.header_timeout, self._header_deadline, self._request_count
            )

    def _header_deadline(self, count: int) -> None:
        self._header_timer = None
        if self._request_count == count and self._awaiting_headers() and self.transport:
            self.transport.abort()  # slowloris: the request never completed its headers

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None


class GuardedServer(web.Server):
    """A low-level server with a connection cap and a header timeout."""

    def __init__(
        self,
        handler: Handler,
        *,
        door: str,
        max_connections: int,
        header_timeout: float,
        log: JsonLog,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.door = door
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self._log = log
        self._refused = 0
        self._logged_at = -_LOG_EVERY_SECONDS

    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)

    def full(self) -> bool:
        return len(self._connections) >= self.max_connections

    def count_refusal(self) -> None:
        """Count a refused connection; log at most one line per interval (a flood
        of connections must not become a flood of log lines)."""
        self._refused += 1
        now = time.monotonic()
        if now - self._logged_at < _LOG_EVERY_SECONDS:
            return
        self._logged_at = now
        self._log.emit(
            "warning",
            "connection_limit",
            door=self.door,
            max_connections=self.max_connections,
            refused=self._refused,
        )
        self._refused = 0


def _request_factory(loop: asyncio.AbstractEventLoop) -> Any:
    """aiohttp's low-level server caps bodies at 1 MiB; ours are read in gateway/bodies.py."""

    def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=CLIENT_MAX_SIZE
        )

    return make


async def serve(
    handler: Handler,
    listen: Listen,
    *,
    door: str,
    log: JsonLog,
    max_connections: int,
    header_timeout: float,
) -> web.ServerRunner:
    """Listen on `listen` until the runner is cleaned up."""
    factory = _request_factory(asyncio.get_running_loop())
    server = GuardedServer(
        handler,
        door=door,
        max_connections=max_connections,
        header_timeout=header_timeout,
        log=log,
        request_factory=factory,
        access_log=None,
        # idle keep-alive connections are closed after this (aiohttp's default,
        # an hour, would let idle clients fill the connection cap)
        keepalive_timeout=KEEPALIVE_SECONDS,
        # after an early answer (413, 408) the unread body is drained this long, not 10 s
        lingering_time=LINGER_SECONDS,
    )
    runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
    await runner.setup()
    await web.TCPSite(runner, listen.host, listen.port, backlog=2048).start()
    return runner
