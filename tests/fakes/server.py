"""Start an aiohttp app on a loopback port, for the fakes."""

from __future__ import annotations

import socket

from aiohttp import web


async def serve(app: web.Application, host: str, port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0 = a free port); returns the runner and the bound port.

    A short shutdown: a test that leaves a `hang` pending must not wait 60 s.
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound: int = sock.getsockname()[1]
    await web.SockSite(runner, sock, backlog=1024).start()
    return runner, bound
