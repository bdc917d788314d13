"""No key material in logs or metrics, whatever bytes arrive.

Malformed requests carrying a valid key are sent over raw sockets (HTTP
clients refuse to send them). Parser errors are where proxies leak: an
error message quoting the offending header line quotes the key with it.
Every line the process wrote is then searched for any 8-character piece of
the client key and of the upstream key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.e2e.hostile.harness import (
    CLIENT_KEY,
    UPSTREAM_KEY,
    RawResponse,
    RecordingAgent,
    RecordingUpstream,
    exchange,
    leaked,
    manifest,
    raw_call,
    start_gateway,
)

pytestmark = pytest.mark.timeout(90)


def malformed(key: str, header: bytes) -> list[tuple[str, bytes]]:
    """Broken requests, each carrying `key` in `header` (b"Authorization: Bearer ")."""
    k = key.encode()
    auth = header + k

    def req(*lines: bytes, body: bytes = b"", start: bytes = b"POST /invoke HTTP/1.1") -> bytes:
        return b"\r\n".join([start, b"Host: gateway", *lines]) + b"\r\n\r\n" + body

    json_len = (b"Content-Type: application/json", b"Content-Length: 2")
    chunked = (b"Content-Type: application/json", b"Transfer-Encoding: chunked")
    return [
        ("control-char-01", req(auth + b"\x01", *json_len, body=b"{}")),
        ("control-char-7f", req(auth + b"\x7f", *json_len, body=b"{}")),
        ("bare-cr", req(auth + b"\rX-Injected: 1", *json_len, body=b"{}")),
        ("nul", req(auth + b"\x00tail", *json_len, body=b"{}")),
        ("non-utf8", req(auth + b"\xff\xfe", *json_len, body=b"{}")),
        ("key-then-control-char", req(header + b"\x01" + k, *json_len, body=b"{}")),
        ("over-long-key-line", req(auth + b"A" * 100_000, *json_len, body=b"{}")),
        ("over-long-other-line", req(auth, b"X-Pad: " + b"p" * 100_000, *json_len, body=b"{}")),
        ("too-many-headers", req(auth, *[b"X-H%d: %s" % (i, k) for i in range(500)])),
        ("space-in-name", req(b"Author ization: Bearer " + k, auth, *json_len, body=b"{}")),
        ("paren-in-name", req(b"X(Key): " + k, auth, *json_len, body=b"{}")),
        ("nul-in-name", req(b"X-K\x00ey: " + k, auth, *json_len, body=b"{}")),
        ("no-colon", req(auth, b"Bearer " + k, *json_len, body=b"{}")),
        ("obs-fold", req(header.rstrip(), b" " + k, *json_len, body=b"{}")),
        ("bad-chunk-size", req(auth, *chunked, body=b"zz\r\n" + k + b"\r\n0\r\n\r\n")),
        ("chunk-overrun", req(auth, *chunked, body=b"2\r\n" + k + b"\r\n0\r\n\r\n")),
        ("chunk-ext-garbage", req(auth, *chunked, body=b"2;\x01" + k + b"\r\n{}\r\n0\r\n\r\n")),
        (
            "te-and-cl",
            req(auth, b"Content-Length: 5", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
        ),
        ("invalid-method", req(auth, *json_len, body=b"{}", start=b"G@T /invoke HTTP/1.1")),
        ("http-0.9", b"GET /invoke\r\n" + auth + b"\r\n\r\n"),
        ("bad-version", req(auth, *json_len, body=b"{}", start=b"POST /invoke HTTP/9.9")),
        ("garbage", b"\x16\x03\x01\x02\x00" + auth + b"\r\n\r\n"),
        ("cl-negative", req(auth, b"Content-Length: -1", body=b"{}")),
        ("cl-text", req(auth, b"Content-Length: two", body=b"{}")),
        ("cl-twice", req(auth, b"Content-Length: 2", b"Content-Length: 3", body=b"{}")),
        ("cl-list", req(auth, b"Content-Length: 2, 3", body=b"{}")),
        ("cl-huge", req(auth, b"Content-Length: 99999999999999999999999", body=b"{}")),
        ("cl-short", req(auth, *json_len[:1], b"Content-Length: 50", body=b"{}")),
        ("target-non-utf8", req(auth, *json_len, body=b"{}", start=b"POST /in\xffvoke HTTP/1.1")),
        (
            "body-with-key",
            req(auth + b"\x01", *json_len[:1], b"Content-Length: %d" % len(k), body=k),
        ),
    ]


async def send_all(addr: tuple[str, int], cases: list[tuple[str, bytes]]) -> tuple[list[str], str]:
    """Send each case; returns the 5xx answers (a crash is never the right answer)
    and every answer's bytes, labelled by case."""
    crashes, answers = [], []
    for name, data in cases:
        r: RawResponse = await exchange(addr, data, timeout=1.0)
        if r.status is not None and r.status >= 500:
            crashes.append(f"{name}: {r}")
        answers.append(f"{name}: {r.raw.decode('latin-1')}")
    return crashes, "\n".join(answers)


def assert_no_key(text: str, where: str) -> None:
    found = leaked(text, {"client key": CLIENT_KEY, "upstream key": UPSTREAM_KEY})
    assert not found, f"key material in {where}:\n" + "\n".join(found[:20])


@pytest.mark.parametrize("door", ["inbound", "outbound"])
async def test_malformed_requests_leave_no_key_in_logs_or_metrics(
    tmp_path: Path, upstream: RecordingUpstream, agent: RecordingAgent, door: str
) -> None:
    body = manifest(upstream.url + "/v1", agent.port)
    async with start_gateway(tmp_path, body) as gw:
        if door == "inbound":
            cases = malformed(CLIENT_KEY, b"Authorization: Bearer ")
            cases += malformed(CLIENT_KEY, b"X-API-Key: ")
            good = await raw_call(gw.inbound, "POST", "/invoke", gw.auth, b"{}")
        else:
            # the agent has no provider key, but one that leaked to it must not
            # end up in the gateway's logs either
            cases = malformed(UPSTREAM_KEY, b"Authorization: Bearer ")
            cases += malformed(UPSTREAM_KEY, b"x-api-key: ")
            good = await raw_call(gw.outbound, "GET", "/v1/models")
        assert good.status == 200, good
        addr = gw.inbound if door == "inbound" else gw.outbound
        crashes, answers = await send_all(addr, cases)
        await asyncio.sleep(0.5)  # let the process write whatever it writes
        assert gw.process.poll() is None, "the gateway died"
        assert_no_key(gw.output(), "the gateway's output")
        assert_no_key(await gw.metrics(), "/metrics")
        # the sender knows its key, but an error page quoting raw input is how
        # a key ends up in a proxy's or a browser's logs downstream
        assert_no_key(answers, "the error answers")
        after = await raw_call(gw.inbound, "POST", "/invoke", gw.auth, b"{}")
        assert after.status == 200, f"the gateway stopped serving: {after}"
        assert not crashes, "5xx answers to malformed requests:\n" + "\n".join(crashes)
