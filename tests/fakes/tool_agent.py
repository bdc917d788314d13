"""A fake agent that uses a tool: it fetches a web page and hands it to the model.

    async with ToolAgent(gateway.outbound, provider="openai") as agent:
        agent.url        # POST /chat {"question": ..., "url": ..., "stream": bool}
        agent.sent       # the exact bytes of each body its SDK sent to the gateway

`POST /chat` fetches `url` (the tool), then calls the model through the
gateway's outbound door with the official SDK (OpenAI chat completions or
Anthropic Messages), the page as the tool result. It answers
`{"answer": ...}`, or, when the gateway refuses the tool result, handles the
SDK's error the way an agent should: `{"answer": <a fallback>, "refused":
{"status", "type", "rule", "message"}}`, still 200.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import openai
from aiohttp import web

from tests.fakes.server import serve

SYSTEM = "You are a research assistant. Answer from the pages you fetch."
FALLBACK = "I could not use that page: it was refused as unsafe."


class ToolAgent:
    def __init__(self, gateway_outbound: str, provider: str = "openai") -> None:
        self.gateway = gateway_outbound
        self.provider = provider
        self.sent: list[bytes] = []
        self.attempts = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._http: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ToolAgent:
        sdk = anthropic if self.provider == "anthropic" else openai
        self._http = sdk.DefaultAsyncHttpxClient(event_hooks={"request": [self._record]})
        app = web.Application()
        app.router.add_post("/chat", self._chat)
        self._runner, self.port = await serve(app, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.aclose()

    def sent_json(self) -> Any:
        """The last body sent, decoded."""
        return json.loads(self.sent[-1])

    async def _record(self, request: Any) -> None:
        self.attempts += 1
        self.sent.append(request.content)

    async def _chat(self, request: web.Request) -> web.Response:
        ask = await request.json()
        async with aiohttp.ClientSession() as s, s.get(ask["url"]) as page:
            tool_result = await page.text()
        try:
            answer = await self._model(ask["question"], ask["url"], tool_result, ask["stream"])
        except (openai.APIStatusError, anthropic.APIStatusError) as exc:
            error = _error_of(exc.body)
            return web.json_response(
                {
                    "answer": FALLBACK,
                    "refused": {"status": exc.status_code, **error},
                }
            )
        return web.json_response({"answer": answer})

    async def _model(self, question: str, url: str, page: str, stream: bool) -> str:
        assert self._http is not None
        if self.provider == "anthropic":
            return await self._anthropic(question, url, page, stream)
        client = openai.AsyncOpenAI(
            base_url=self.gateway + "/v1", api_key="unused", http_client=self._http
        )
        messages: list[Any] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "fetch", "arguments": f'{{"url": "{url}"}}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": page},
        ]
        if not stream:
            done = await client.chat.completions.create(model="gpt-4o", messages=messages)
            return done.choices[0].message.content or ""
        parts = []
        chunks = await client.chat.completions.create(
            model="gpt-4o",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts)

    async def _anthropic(self, question: str, url: str, page: str, stream: bool) -> str:
        client = anthropic.AsyncAnthropic(
            base_url=self.gateway, api_key="unused", http_client=self._http
        )
        messages: list[Any] = [
            {"role": "user", "content": question},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "fetch", "input": {"url": url}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": page}],
            },
        ]
        if not stream:
            done = await client.messages.create(
                model="claude-sonnet-4-5", max_tokens=100, system=SYSTEM, messages=messages
            )
            return "".join(b.text for b in done.content if b.type == "text")
        parts = []
        async with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=100, system=SYSTEM, messages=messages
        ) as events:
            async for text in events.text_stream:
                parts.append(text)
        return "".join(parts)


def _error_of(body: object) -> dict[str, Any]:
    # OpenAI's SDK hands over the "error" object, Anthropic's the whole body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if not isinstance(body, dict):
        return {"message": str(body)}
    return {k: body.get(k) for k in ("type", "rule", "message")}
