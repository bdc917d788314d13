"""A small LLM agent: `POST /chat` answers a message with one chat completion.

It runs as the `agent` container of an AgentDeployment's pod and never holds
a provider key: the operator sets OPENAI_BASE_URL to the gateway sidecar's
outbound door (http://127.0.0.1:8081/v1) and OPENAI_API_KEY to a placeholder;
the gateway injects the real key, enforces the budget and retries. Callers
reach this app through the gateway's inbound door (client keys, prompt guard).

    POST /chat    {"message": "..."} -> {"reply": "...", "model": "...", "usage": {"input": n, ...}}
    GET  /health  {"status": "ok"}   (spec.healthPath, the pod's probes)

Environment: OPENAI_BASE_URL, OPENAI_API_KEY (read by the SDK), AGENT_MODEL
(spec.model.default; gpt-4o-mini when unset), SYSTEM_PROMPT (optional).
Listens on --port (default: PORT or 8000, which must equal spec.port).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from openai import APIConnectionError, APIStatusError, APITimeoutError, AsyncOpenAI

MODEL = os.environ.get("AGENT_MODEL", "gpt-4o-mini")
SYSTEM_PROMPT = os.environ.get(
    "SYSTEM_PROMPT", "You are a friendly support assistant. Answer briefly and plainly."
)
CLIENT = web.AppKey("client", AsyncOpenAI)
log = logging.getLogger("agent")


def status_for(upstream: int) -> int:
    """The status a caller gets for an error status from the model (via the gateway)."""
    if upstream in (429, 503):  # budget used up / rate limited, or not ready: retry later
        return upstream
    if upstream in (400, 413, 422):  # the request itself was refused
        return 400
    return 502  # anything else is our side's trouble (a key, the provider), not the caller's


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def chat(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return error(400, "the body must be JSON")
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip():
        return error(400, '"message" must be a non-empty string')
    try:
        completion = await request.app[CLIENT].chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": message},
            ],
        )
    except APIStatusError as exc:
        status = status_for(exc.status_code)
        log.warning("model call failed: %s -> %s", exc.status_code, status)
        if status == 502:
            # a provider's 401 may quote part of the key: never pass it on
            return error(502, "the model call failed")
        detail: Any = exc.body.get("message") if isinstance(exc.body, dict) else None
        retry_after = exc.response.headers.get("retry-after")
        return error(
            status,
            str(detail or exc.message),
            {"Retry-After": retry_after} if retry_after else None,
        )
    except APITimeoutError:
        return error(504, "the model did not answer in time")
    except APIConnectionError:
        return error(502, "the model could not be reached")
    reply = completion.choices[0].message.content if completion.choices else None
    usage = completion.usage
    tokens = {"input": usage.prompt_tokens, "output": usage.completion_tokens} if usage else None
    return web.json_response({"reply": reply, "model": completion.model, "usage": tokens})


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/chat", chat)
    app.router.add_get("/health", health)

    async def client(app: web.Application) -> AsyncIterator[None]:
        # Base URL and key come from the environment the operator sets. The gateway
        # retries with backoff and honours Retry-After (within its 30 s default
        # timeout): retrying here too would multiply the attempts.
        app[CLIENT] = AsyncOpenAI(max_retries=0, timeout=60.0)
        yield
        await app[CLIENT].close()

    app.cleanup_ctx.append(client)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # every interface: the kubelet probes the pod's IP
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info("listening on %s:%d, model %s", args.host, args.port, MODEL)
    web.run_app(make_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
