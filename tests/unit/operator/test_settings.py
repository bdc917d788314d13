"""Flags and environment of `agent-operator run`: priority, peering lifetime, logging."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from agent_operator.operator.config import load
from agent_operator.operator.main import configure_logging

LOG = logging.getLogger("agent_operator.operator")
TOUCHED = ("urllib3", "kopf.objects", "aiohttp.access", "asyncio")


def test_priority_is_auto_with_peering_else_zero() -> None:
    assert load([], {}).priority == 0
    assert load(["--peering", "p"], {}).priority is None  # auto
    assert load(["--peering", "p", "--priority", "5"], {}).priority == 5
    assert load([], {"AGENT_OPERATOR_PRIORITY": "auto"}).priority is None
    assert load(["--priority", "AUTO"], {}).priority is None
    env = {"AGENT_OPERATOR_PEERING": "p", "AGENT_OPERATOR_PRIORITY": "-3"}
    assert load([], env).priority == -3
    assert load(["--priority", "auto"], env).priority is None  # flags win


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--priority", "high"], {}),
        ([], {"AGENT_OPERATOR_PRIORITY": "1.5"}),
        (["--log-level", "verbose"], {}),
        ([], {"AGENT_OPERATOR_LOG_LEVEL": "trace"}),
        ([], {"AGENT_OPERATOR_LOG_FORMAT": "yaml"}),
        (["--peering-lifetime-seconds", "4"], {}),
    ],
)
def test_invalid_values_are_refused(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(SystemExit):
        load(argv, env)


def test_peering_lifetime() -> None:
    assert load([], {}).peering_lifetime_seconds == 10
    env = {"AGENT_OPERATOR_PEERING_LIFETIME_SECONDS": "30"}
    assert load([], env).peering_lifetime_seconds == 30


def test_log_level_from_flag_environment_or_verbose() -> None:
    assert load([], {}).log_level == "info"
    assert load(["--log-level", "WARNING"], {}).log_level == "warning"
    assert load([], {"AGENT_OPERATOR_LOG_LEVEL": "Error"}).log_level == "error"
    assert load([], {"AGENT_OPERATOR_VERBOSE": "true"}).log_level == "debug"
    env = {"AGENT_OPERATOR_LOG_LEVEL": "error", "AGENT_OPERATOR_VERBOSE": "true"}
    assert load([], env).log_level == "error"  # the explicit level wins
    assert load(["-v"], {"AGENT_OPERATOR_LOG_LEVEL": "error"}).log_level == "debug"
    assert load(["--verbose"], {}).verbose
    assert load(["-v", "--log-level", "info"], {}).log_level == "info"  # the last one wins
    assert load([], {"AGENT_OPERATOR_LOG_FORMAT": "TEXT"}).log_format == "text"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    others = {
        name: (lg.level, lg.propagate, lg.handlers[:])
        for name in TOUCHED
        for lg in [logging.getLogger(name)]
    }
    yield
    root.handlers[:], root.level = handlers, level
    for name, (lvl, propagate, hs) in others.items():
        lg = logging.getLogger(name)
        lg.level, lg.propagate, lg.handlers[:] = lvl, propagate, hs


def logged(argv: list[str], capsys: pytest.CaptureFixture[str], env: dict[str, str]) -> str:
    configure_logging(load(["--log-format", "text", *argv], env))
    capsys.readouterr()
    LOG.debug("a debug line")
    LOG.info("an info line")
    LOG.warning("a warning line")
    LOG.error("an error line")
    logging.getLogger("kopf.objects").info("Handler 'x' succeeded.")
    return capsys.readouterr().err


@pytest.mark.usefixtures("restore_logging")
def test_debug_lines_appear_only_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    out = logged([], capsys, {})
    assert "an info line" in out and "a debug line" not in out
    assert "Handler 'x' succeeded" not in out  # kopf's per-event lines: debug only
    for argv, env in ((["-v"], {}), ([], {"AGENT_OPERATOR_LOG_LEVEL": "debug"})):
        out = logged(argv, capsys, env)
        assert "a debug line" in out and "Handler 'x' succeeded" in out
    out = logged(["--log-level", "warning"], capsys, {})
    assert "a warning line" in out and "an info line" not in out
    out = logged([], capsys, {"AGENT_OPERATOR_LOG_LEVEL": "error"})
    assert "an error line" in out and "a warning line" not in out


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load([], {}))
    capsys.readouterr()
    LOG.info("hello %s", "world")
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line) | {"timestamp": None} == {
        "message": "hello world",
        "severity": "info",
        "timestamp": None,
    }
    configure_logging(load(["--log-format", "text"], {}))
    capsys.readouterr()
    LOG.info("hello")
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith("[INFO    ] hello") and not line.startswith("{")
