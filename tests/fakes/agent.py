"""A tiny fake agent for the gateway's inbound door: echoes what it received.

    async with FakeAgent() as agent:   # 127.0.0.1, free port
        agent.url                      # e.g. http://127.0.0.1:40123
        agent.requests                 # every request seen (method, path, headers, body)

Routes: any path answers 200 with JSON {method, path, query, headers, body}
(`body` decoded as UTF-8); `/stream?n=5` answers an SSE stream of n events;
`/slow?seconds=0.2` sleeps first (for in-flight measurements); `/login` also
sets a cookie.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.server import serve


@dataclass(frozen=True, slots=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class FakeAgent:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.requests: list[SeenRequest] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> FakeAgent:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/stream", self._stream)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self._runner, self.port = await serve(app, self.host, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            SeenRequest(
                request.method,
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
        )
        if request.path == "/slow":
            await asyncio.sleep(float(request.query.get("seconds", "0.2")))
        headers = {"X-Agent": "fake"}
        if request.path == "/login":
            headers["Set-Cookie"] = "session=agent-session-1; Path=/"
        payload: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        return web.json_response(payload, headers=headers)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        count = int(request.query.get("n", "5"))
        interval = float(request.query.get("interval", "0"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(count):
            await response.write(f"data: {json.dumps({'i': i})}\n\n".encode())
            if interval:
                await asyncio.sleep(interval)
        await response.write_eof()
        return response
