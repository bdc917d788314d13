"""A fake LLM provider speaking OpenAI's and Anthropic's real wire formats.

In-process (tests)::

    async with FakeUpstream() as up:          # 127.0.0.1, free port
        up.enqueue(Fault.status(429, retry_after="2"), Fault.reset())
        ...                                    # point a client at up.url + "/v1"
        assert up.requests[0].json["model"] == "gpt-4o"

Standalone (benchmarks, e2e)::

    python -m tests.fakes.upstream --host 127.0.0.1 --port 0
    # first stdout line: "listening on http://127.0.0.1:PORT"
    # control: POST /_fake/enqueue, POST /_fake/valid-keys, GET /_fake/requests,
    #          POST /_fake/clear

Token counts are deterministic so tests can compute the expected cost:
prompt tokens = whitespace-separated words of the prompt text (messages,
system, instructions, input); completion tokens = `completion_tokens` (10)
or the request's max tokens when smaller (then the finish reason is
"length" / "max_tokens"). The response `model` echoes the request's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import provider_formats as fmt
from tests.fakes.server import serve

OPENAI, ANTHROPIC = "openai", "anthropic"
JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|completions|embeddings)$")
# Entries of the response cache before it is dropped (bounds memory when
# prompts vary; a benchmark repeats one shape and always hits).
_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure, consumed by the next API request.

    kind: "status" (error response `code` in the provider's error shape, with
    Retry-After when `retry_after` is set: seconds or an HTTP-date, sent
    verbatim), "reset" (TCP reset, no response), "hang" (sleep `seconds`,
    then respond normally), "cut_stream" (send `after_chunks` SSE events, or
    half a JSON body, then drop the connection), "no_usage" (leave the usage
    out even when the request asks for it).
    """

    kind: str
    code: int = 0
    retry_after: str | None = None
    message: str | None = None
    seconds: float = 0.0
    after_chunks: int = 0

    @classmethod
    def status(cls, code: int, retry_after: str | None = None, message: str | None = None) -> Fault:
        return cls("status", code=code, retry_after=retry_after, message=message)

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def cut_stream(cls, after_chunks: int) -> Fault:
        return cls("cut_stream", after_chunks=after_chunks)

    @classmethod
    def no_usage(cls) -> Fault:
        return cls("no_usage")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """An API request as the fake received it; `received_at` is
    time.monotonic() seconds, `headers` has lower-case keys."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any  # parsed body; None when empty or not JSON
    received_at: float
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""  # the body exactly as received (not in /_fake/requests)


class BadRequest(Exception):
    """The request body is not what the provider accepts (answered with 400)."""


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a response depends on; the key of the response cache."""

    endpoint: str
    model: str
    prompt: int
    completion: int
    limited: bool
    stream: bool
    usage: bool
    extra: tuple[Any, ...] = ()


class FakeUpstream:
    """The fake provider: an aiohttp server, started by `async with`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        completion_tokens: int = 10,
        stream_interval: float = 0.0,
        max_recorded: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.host, self.port = host, port
        self.delay = delay  # seconds each answer takes, like a model thinking
        self.requests: list[RecordedRequest] = []
        # (model, input tokens, output tokens) of every answer served whole with a
        # 2xx: what a provider would bill, to compare with what the gateways charged
        self.billed: list[tuple[str, int, int]] = []
        self.valid_keys: set[str] | None = None
        self.completion_tokens = completion_tokens  # natural length of every completion
        self.stream_interval = stream_interval  # seconds between SSE events
        self.max_recorded = max_recorded  # keep memory flat in long benchmarks
        self.models = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "claude-sonnet-4-5"]
        self._faults: collections.deque[Fault] = collections.deque()
        self._cache: dict[_Shape, bytes | list[bytes]] = {}
        self._created = int(time.time())
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._endpoints: dict[str, Callable[[Any, bool, str | None], _Shape]] = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completions,
            "/v1/embeddings": self._embeddings,
            "/v1/responses": self._responses,
            "/v1/messages": self._messages,
        }

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> FakeUpstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/_fake/enqueue", self._control_enqueue)
        app.router.add_post("/_fake/valid-keys", self._control_valid_keys)
        app.router.add_get("/_fake/requests", self._control_requests)
        app.router.add_post("/_fake/clear", self._control_clear)
        app.router.add_route("*", "/{tail:.*}", self._api)
        self._runner, self.port = await serve(app, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ test API

    def enqueue(self, *faults: Fault) -> None:
        """Queue faults; each API request consumes one, in order."""
        self._faults.extend(faults)

    def clear(self) -> None:
        """Forget recorded requests and pending faults (keys stay)."""
        self.requests.clear()
        self.billed.clear()
        self._faults.clear()

    # ------------------------------------------------------------ request path

    async def _api(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        payload = self._parse(raw)
        self._record(request, payload, raw)
        provider = self._provider(request)
        fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            if fault.kind == "reset":
                return self._reset(request)
            if fault.kind == "status":
                return self._error(provider, fault.code, fault.message, fault.retry_after)
            if fault.kind == "hang":
                await asyncio.sleep(fault.seconds)
        if not self._authorized(request):
            return self._error(
                provider, 401, None if self._presented(request) else _NO_KEY[provider]
            )
        if request.method == "GET" and request.path == "/v1/models":
            return self._models(request)
        handler, payload = self._route(request.path, payload)
        if handler is None:
            return self._error(
                provider, 404, f"Unknown request URL: {request.method} {request.path}"
            )
        if request.method != "POST":
            return self._error(provider, 405, f"Method {request.method} not allowed.")
        if not isinstance(payload, dict):
            return self._error(provider, 400, "We could not parse the JSON body of your request.")
        no_usage = fault is not None and fault.kind == "no_usage"
        try:
            shape = handler(payload, no_usage, request.query.get("api-version"))
        except BadRequest as exc:
            return self._error(provider, 400, str(exc))
        body = self._render(shape)
        if self.delay:
            await asyncio.sleep(self.delay)
        cut = fault.after_chunks if fault is not None and fault.kind == "cut_stream" else None
        if cut is None and (self.max_recorded is None or len(self.billed) < self.max_recorded):
            self.billed.append((shape.model, shape.prompt, shape.completion))
        if isinstance(body, list):
            return await self._stream(request, provider, body, cut)
        if cut is not None:
            return await self._cut_body(request, body)
        return web.Response(body=body, headers={**JSON_HEADERS, **self._request_id(provider)})

    @staticmethod
    def _parse(raw: bytes) -> Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return ...  # not JSON: a sentinel that is no dict, answered with 400

    def _record(self, request: web.Request, payload: Any, raw: bytes) -> None:
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                json=None if payload is ... else payload,
                received_at=time.monotonic(),
                query=dict(request.query),
                body=raw,
            )
        )
        if self.max_recorded is not None and len(self.requests) > self.max_recorded:
            del self.requests[: len(self.requests) // 2]

    @staticmethod
    def _provider(request: web.Request) -> str:
        if request.path.startswith("/v1/messages") or (
            request.path == "/v1/models" and "anthropic-version" in request.headers
        ):
            return ANTHROPIC
        return OPENAI

    @staticmethod
    def _presented(request: web.Request) -> list[str]:
        keys = [request.headers.get("x-api-key"), request.headers.get("api-key")]
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            keys.append(auth[7:].strip())
        return [k for k in keys if k]

    def _authorized(self, request: web.Request) -> bool:
        if self.valid_keys is None:
            return True
        return any(k in self.valid_keys for k in self._presented(request))

    def _route(self, path: str, payload: Any) -> tuple[Callable[..., _Shape] | None, Any]:
        handler = self._endpoints.get(path)
        if handler is not None:
            return handler, payload
        if path == "/v1/messages/count_tokens":
            return self._count_tokens, payload
        match = _AZURE_PATH.match(path)
        if match is None:
            return None, payload
        # Azure names the model by deployment in the URL; echo that as model
        if isinstance(payload, dict):
            payload = {**payload, "model": payload.get("model", match.group(1))}
        return self._endpoints["/v1/" + match.group(2)], payload

    def _error(
        self, provider: str, status: int, message: str | None = None, retry_after: str | None = None
    ) -> web.Response:
        if provider == ANTHROPIC:
            body = fmt.anthropic_error(status, message)
        else:
            body = fmt.openai_error(status, message)
        headers = {**JSON_HEADERS, **self._request_id(provider)}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        return web.Response(status=status, body=body, headers=headers)

    def _request_id(self, provider: str) -> dict[str, str]:
        self._seq += 1
        return {("request-id" if provider == ANTHROPIC else "x-request-id"): f"req_fake{self._seq}"}

    @staticmethod
    def _reset(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # linger 0: close() sends RST, as a provider's load balancer dropping us would
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response()  # never sent: the transport is gone

    async def _stream(
        self, request: web.Request, provider: str, events: list[bytes], cut: int | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={**SSE_HEADERS, **self._request_id(provider)})
        await response.prepare(request)
        for i, event in enumerate(events):
            if cut is not None and i >= cut:
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write(event)
            if self.stream_interval:
                await asyncio.sleep(self.stream_interval)
        await response.write_eof()
        return response

    @staticmethod
    async def _cut_body(request: web.Request, body: bytes) -> web.StreamResponse:
        """Promise the whole JSON body, send half, drop the connection."""
        response = web.StreamResponse(headers=JSON_HEADERS)
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.abort()
        return response

    def _models(self, request: web.Request) -> web.Response:
        if "anthropic-version" in request.headers:
            body = fmt.anthropic_models(self.models)
        else:
            body = fmt.openai_models(self.models, self._created)
        return web.Response(body=body, headers=JSON_HEADERS)

    # ------------------------------------------------------------ endpoints

    def _render(self, shape: _Shape) -> bytes | list[bytes]:
        """Response bytes for a shape, cached: the hot path is a dict hit."""
        cached = self._cache.get(shape)
        if cached is not None:
            return cached
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        body = self._build(shape, len(self._cache))
        self._cache[shape] = body
        return body

    def _build(self, s: _Shape, n: int) -> bytes | list[bytes]:
        created = self._created
        if s.endpoint == "chat":
            ident, finish = f"chatcmpl-fake{n:08d}", "length" if s.limited else "stop"
            args = (ident, created, s.model, s.prompt, s.completion, finish, s.usage)
            return fmt.chat_completion_chunks(*args) if s.stream else fmt.chat_completion(*args)
        if s.endpoint == "completions":
            ident, finish = f"cmpl-fake{n:08d}", "length" if s.limited else "stop"
            args = (ident, created, s.model, s.prompt, s.completion, finish, s.usage)
            return fmt.text_completion_chunks(*args) if s.stream else fmt.text_completion(*args)
        if s.endpoint == "embeddings":
            count, dimensions, encoding = s.extra
            return fmt.embeddings(s.model, [None] * count, dimensions, encoding, s.prompt, s.usage)
        if s.endpoint == "responses":
            ident, (max_output,) = f"resp_fake{n:08d}", s.extra
            rargs = (ident, created, s.model, s.prompt, s.completion, max_output, s.usage)
            return fmt.response_events(*rargs) if s.stream else fmt.response(*rargs)
        if s.endpoint == "messages":
            ident, stop = f"msg_fake{n:08d}", "max_tokens" if s.limited else "end_turn"
            margs = (ident, s.model, s.prompt, s.completion, stop, s.usage)
            return fmt.message_events(*margs) if s.stream else fmt.message(*margs)
        if s.endpoint == "count_tokens":
            return fmt.dumps({"input_tokens": s.prompt})
        raise AssertionError(s.endpoint)

    def _length(self, limit: Any) -> tuple[int, bool]:
        """Completion tokens and whether the request's max cut them short."""
        if (
            isinstance(limit, int)
            and not isinstance(limit, bool)
            and limit < self.completion_tokens
        ):
            return max(limit, 0), True
        return self.completion_tokens, False

    @staticmethod
    def _model(payload: dict[str, Any]) -> str:
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter")
        return model

    def _chat(self, p: dict[str, Any], no_usage: bool, _: str | None) -> _Shape:
        model = self._model(p)
        if not isinstance(p.get("messages"), list):
            raise BadRequest("Missing required parameter: 'messages'.")
        stream = p.get("stream") is True
        options = p.get("stream_options") or {}
        # OpenAI streams usage only when asked; non-streaming always has it
        usage = not no_usage and (not stream or options.get("include_usage") is True)
        completion, limited = self._length(p.get("max_completion_tokens", p.get("max_tokens")))
        prompt = fmt.count_words(p["messages"])
        return _Shape("chat", model, prompt, completion, limited, stream, usage)

    def _completions(self, p: dict[str, Any], no_usage: bool, _: str | None) -> _Shape:
        model = self._model(p)
        if "prompt" not in p:
            raise BadRequest("Missing required parameter: 'prompt'.")
        stream = p.get("stream") is True
        options = p.get("stream_options") or {}
        usage = not no_usage and (not stream or options.get("include_usage") is True)
        completion, limited = self._length(p.get("max_tokens", 16))
        return _Shape(
            "completions", model, fmt.count_words(p["prompt"]), completion, limited, stream, usage
        )

    def _embeddings(self, p: dict[str, Any], no_usage: bool, _: str | None) -> _Shape:
        model = self._model(p)
        raw = p.get("input")
        if raw is None or raw == "" or raw == []:
            raise BadRequest("'input' is a required property")
        # a string, a token array, or a list of either: one vector each
        single = isinstance(raw, str) or (isinstance(raw, list) and isinstance(raw[0], int))
        count = 1 if single else len(raw)
        dimensions = p.get("dimensions") or 8
        encoding = p.get("encoding_format") or "float"
        extra = (count, int(dimensions), str(encoding))
        return _Shape(
            "embeddings", model, fmt.count_words(raw), 0, False, False, not no_usage, extra
        )

    def _responses(self, p: dict[str, Any], no_usage: bool, _: str | None) -> _Shape:
        model = self._model(p)
        if "input" not in p:
            raise BadRequest("Missing required parameter: 'input'.")
        prompt = fmt.count_words(p["input"]) + fmt.count_words(p.get("instructions"))
        limit = p.get("max_output_tokens")
        completion, limited = self._length(limit)
        stream = p.get("stream") is True
        return _Shape(
            "responses", model, prompt, completion, limited, stream, not no_usage, (limit,)
        )

    def _messages(self, p: dict[str, Any], no_usage: bool, _: str | None) -> _Shape:
        model = self._model(p)
        if not isinstance(p.get("messages"), list):
            raise BadRequest("messages: Field required")
        if not isinstance(p.get("max_tokens"), int):
            raise BadRequest("max_tokens: Field required")
        prompt = fmt.count_words(p["messages"]) + fmt.count_words(p.get("system"))
        completion, limited = self._length(p["max_tokens"])
        stream = p.get("stream") is True
        return _Shape("messages", model, prompt, completion, limited, stream, not no_usage)

    def _count_tokens(self, p: dict[str, Any], _: bool, __: str | None) -> _Shape:
        model = self._model(p)
        prompt = fmt.count_words(p.get("messages")) + fmt.count_words(p.get("system"))
        return _Shape("count_tokens", model, prompt, 0, False, False, True)

    # ------------------------------------------------------------ control (out of process)

    async def _control_enqueue(self, request: web.Request) -> web.Response:
        faults = [Fault.from_json(item) for item in await request.json()]
        self.enqueue(*faults)
        return web.json_response({"queued": len(self._faults)})

    async def _control_valid_keys(self, request: web.Request) -> web.Response:
        keys = await request.json()
        self.valid_keys = None if keys is None else set(keys)
        return web.json_response({"valid_keys": keys})

    async def _control_requests(self, _: web.Request) -> web.Response:
        return web.json_response(
            [{k: v for k, v in asdict(r).items() if k != "body"} for r in self.requests]
        )

    async def _control_clear(self, _: web.Request) -> web.Response:
        self.clear()
        return web.json_response({"cleared": True})


_NO_KEY = {
    OPENAI: "You didn't provide an API key. You need to provide your API key in an "
    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    ANTHROPIC: "x-api-key header is required",
}


async def _serve(args: argparse.Namespace) -> None:
    upstream = FakeUpstream(
        args.host,
        args.port,
        completion_tokens=args.completion_tokens,
        stream_interval=args.stream_interval_ms / 1000.0,
        max_recorded=args.max_recorded,
    )
    if args.valid_key:
        upstream.valid_keys = set(args.valid_key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with upstream:
        print(f"listening on {upstream.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--valid-key", action="append", help="accept only these keys (repeat)")
    parser.add_argument("--completion-tokens", type=int, default=10)
    parser.add_argument("--stream-interval-ms", type=float, default=0.0)
    parser.add_argument(
        "--max-recorded", type=int, default=10_000, help="recorded requests kept (memory bound)"
    )
    args = parser.parse_args(argv)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    # uvloop when present: the fake must not be the bottleneck of a benchmark
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        runner.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
