from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from yarl import URL

from agent_operator.gateway.config import parse_settings
from agent_operator.gateway.endpoints import upstream_path
from agent_operator.sidecar import GatewayArgs, Listen, parse_listen

RENDERED = [
    "--provider",
    "openai",
    "--upstream-url",
    "https://api.openai.com/v1/",
    "--agent-url",
    "http://127.0.0.1:8000",
    "--inbound-listen",
    "0.0.0.0:8080",
    "--outbound-listen",
    "127.0.0.1:8081",
    "--admin-listen",
    "0.0.0.0:9090",
    "--credentials-dir",
    "/var/run/agents.dev/credentials",
    "--client-keys-dir",
    "/var/run/agents.dev/client-keys",
    "--budget-dir",
    "/var/run/agents.dev/budget",
    "--timeout-seconds",
    "30",
    "--retry-attempts",
    "3",
    "--retry-backoff-min-seconds",
    "1",
    "--retry-backoff-max-seconds",
    "10",
    "--breaker-failure-threshold",
    "5",
    "--breaker-open-seconds",
    "30",
    "--prompt-guard",
    "flag",
    "--prompt-guard-extra-pattern",
    "a+",
    "--prompt-guard-extra-pattern",
    "b+",
    "--otlp-endpoint",
    "http://collector:4318",
    "--agent",
    "bot",
    "--namespace",
    "team-a",
]


def test_the_rendered_command_line_parses() -> None:
    s = parse_settings(RENDERED)
    assert s.upstream_url == "https://api.openai.com/v1"
    assert s.outbound == Listen("127.0.0.1", 8081)
    assert s.client_keys_dir == Path("/var/run/agents.dev/client-keys")
    assert s.prompt_guard_extra_patterns == ("a+", "b+")
    assert (s.retry_attempts, s.retry_backoff_max_seconds, s.breaker_open_seconds) == (3, 10, 30)
    assert (s.agent, s.namespace, s.otlp_endpoint) == ("bot", "team-a", "http://collector:4318")


def test_settings_are_immutable() -> None:
    s = parse_settings(RENDERED)
    with pytest.raises(AttributeError):
        s.provider = "anthropic"  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    [
        ["--provider", "bedrock"],
        ["--upstream-url", "ftp://x"],
        ["--outbound-listen", "nonsense"],
        ["--outbound-listen", "127.0.0.1:70000"],
        ["--retry-attempts", "0"],
        ["--retry-attempts", "three"],
        ["--timeout-seconds", "-1"],
        ["--timeout-seconds", "nan"],
        ["--retry-backoff-min-seconds", "20"],  # above the max (10)
        ["--retry-backoff-min-seconds", "0"],
        ["--breaker-failure-threshold", "0"],
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = list(RENDERED)
    for i in range(0, len(bad), 2):
        args[args.index(bad[i]) + 1] = bad[i + 1]
    with pytest.raises(SystemExit) as exited:
        parse_settings(args)
    assert exited.value.code == 2
    assert bad[0] in capsys.readouterr().err


def test_unknown_and_abbreviated_flags_exit() -> None:
    for extra in (["--no-such-flag", "1"], ["--max-conn", "5"]):
        with pytest.raises(SystemExit):
            parse_settings([*RENDERED, *extra])


def test_listen_forms() -> None:
    assert parse_listen("[::1]:8081") == Listen("::1", 8081)
    assert parse_listen(":9090") == Listen("0.0.0.0", 9090)


@pytest.mark.parametrize(
    ("base", "path", "joined"),
    [
        ("https://api.openai.com/v1", "/v1/chat/completions", "/v1/chat/completions"),
        ("https://api.openai.com", "/v1/chat/completions", "/v1/chat/completions"),
        ("https://api.anthropic.com", "/v1/messages", "/v1/messages"),
        ("https://gw.example/proxy/v1", "/v1/embeddings", "/proxy/v1/embeddings"),
        (
            "https://x.openai.azure.com",
            "/openai/deployments/d/chat/completions",
            "/openai/deployments/d/chat/completions",
        ),
        ("https://api.openai.com/v1", "/v1x", "/v1/v1x"),
    ],
)
def test_upstream_path(base: str, path: str, joined: str) -> None:
    assert upstream_path(URL(base), path) == joined


def test_docs_list_every_flag_and_only_those() -> None:
    """docs/gateway.md's flag tables and `GatewayArgs` name the same flags."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "gateway.md").read_text()
    section = text[text.index("## Command line") : text.index("## Mounted files")]
    documented = set(re.findall(r"`(--[a-z-]+)`", section))
    flags = {f.metadata["flag"].name for f in dataclasses.fields(GatewayArgs)}
    assert documented == flags
