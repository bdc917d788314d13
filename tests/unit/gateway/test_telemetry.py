from __future__ import annotations

import asyncio
import io
import json
import logging

from agent_operator.gateway.telemetry import JsonLog, LibraryLogHandler


class CountingStream(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_one_json_object_per_line_with_static_fields() -> None:
    out = CountingStream()
    log = JsonLog(out, agent="bot", namespace="team-a")
    log.emit("info", "request", status=200, path="/v1/x")
    record = json.loads(out.getvalue())
    assert record["event"] == "request" and record["level"] == "info"
    assert (record["agent"], record["namespace"], record["status"]) == ("bot", "team-a", 200)
    assert out.flushes == 1  # outside a loop: flushed at once


async def test_inside_the_loop_a_burst_is_flushed_once() -> None:
    out = CountingStream()
    log = JsonLog(out)
    for i in range(100):
        log.emit("info", "request", n=i)
    assert out.flushes == 0
    await asyncio.sleep(0)
    assert out.flushes == 1
    assert len(out.getvalue().splitlines()) == 100


def test_library_warnings_become_json() -> None:
    out = io.StringIO()
    logger = logging.getLogger("test.gateway.library")
    logger.propagate = False
    logger.addHandler(LibraryLogHandler(JsonLog(out)))
    try:
        logger.info("ignored")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("handler failed")
    finally:
        logger.handlers.clear()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["event"] == "library_log" and lines[0]["level"] == "error"
    # the exception is named by its type only: its message may quote raw input
    assert lines[0]["message"] == "handler failed" and lines[0]["error"] == "ValueError"
