"""`agent-operator healthcheck`: finds the server of its container and probes its /healthz."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from agent_operator import cli, healthcheck, sidecar
from agent_operator.healthcheck import Server, find_servers, health_url, role_of
from agent_operator.operator import config

SCRIPT = "/opt/agent-operator/bin/agent-operator"
PYTHON = "/opt/agent-operator/bin/python"


class _Handler(BaseHTTPRequestHandler):
    status = 200
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the tests read the recorded paths, not a log."""


@pytest.fixture
def server() -> Iterator[tuple[ThreadingHTTPServer, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"status": 200, "paths": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd, handler
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _url(httpd: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/healthz"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _proc(tmp_path: Path, processes: dict[int, tuple[list[str], dict[str, str] | None]]) -> Path:
    """A fake /proc: pid -> (argv, environment; None: unreadable)."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    for pid, (argv, env) in processes.items():
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
        if env is not None:
            pairs = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
            (proc / str(pid) / "environ").write_bytes(pairs)
    return proc


# --- probing -------------------------------------------------------------------


def test_200_is_healthy(server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    httpd, handler = server
    assert healthcheck.main(["--url", _url(httpd)], env={}) == 0
    assert handler.paths == ["/healthz"]


def test_503_is_unhealthy(
    server: tuple[ThreadingHTTPServer, type[_Handler]], capsys: pytest.CaptureFixture[str]
) -> None:
    httpd, handler = server
    handler.status = 503
    assert healthcheck.main(["--url", _url(httpd)], env={}) == 1
    assert "HTTP 503" in capsys.readouterr().err


def test_refused_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}/healthz"
    assert healthcheck.main(["--url", url], env={}) == 1
    assert "ConnectionRefusedError" in capsys.readouterr().err


def test_silent_server_is_unhealthy_within_the_timeout() -> None:
    # accepted by the kernel's backlog, never answered
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/healthz"
        start = time.monotonic()
        assert healthcheck.main(["--url", url, "--timeout", "0.5"], env={}) == 1
        assert time.monotonic() - start < 2


def test_url_from_the_environment(server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    httpd, _ = server
    assert healthcheck.main([], env={healthcheck.URL_ENV: _url(httpd)}) == 0


def test_only_http_urls(capsys: pytest.CaptureFixture[str]) -> None:
    assert healthcheck.main(["--url", "https://127.0.0.1:1/healthz"], env={}) == 1
    assert "not an http:// URL" in capsys.readouterr().err


def test_reached_through_the_cli(server: tuple[ThreadingHTTPServer, type[_Handler]]) -> None:
    httpd, _ = server
    assert cli.main(["healthcheck", "--url", _url(httpd)]) == 0


# --- finding the server ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [PYTHON, SCRIPT, "gateway", "--provider", "openai"],
            ("gateway", ("--provider", "openai")),
        ),
        ([SCRIPT, "run", "-n", "demo"], ("run", ("-n", "demo"))),
        (["python3", "-m", "agent_operator.cli", "run"], ("run", ())),
        ([PYTHON, SCRIPT, "healthcheck"], None),
        ([PYTHON, SCRIPT, "render", "-f", "x.yaml"], None),
        ([PYTHON, SCRIPT], None),
        (["/bin/sh", "-c", "agent-operator gateway"], None),
        (["/sbin/docker-init", "--", "agent-operator", "gateway"], None),
        (["python3.11", "-u", "-m", "agent_operator.cli", "gateway"], ("gateway", ())),
        (["sleep", "agent-operator", "run"], None),
    ],
)
def test_role_of(argv: list[str], expected: tuple[str, tuple[str, ...]] | None) -> None:
    assert role_of(argv) == expected


def _server(role: str, *args: str, env: dict[str, str] | None = None) -> Server:
    return Server(pid=1, role=role, args=args, env=env or {})


@pytest.mark.parametrize(
    ("server", "url"),
    [
        (_server("gateway"), "http://127.0.0.1:9090/healthz"),
        (_server("gateway", "--admin-listen", "127.0.0.1:19090"), "http://127.0.0.1:19090/healthz"),
        (_server("gateway", "--admin-listen=:19090"), "http://127.0.0.1:19090/healthz"),
        (_server("gateway", "--admin-listen", "[::]:9091"), "http://[::1]:9091/healthz"),
        (_server("gateway", "--admin-listen", "[::1]:9091"), "http://[::1]:9091/healthz"),
        (_server("run"), "http://127.0.0.1:8081/healthz"),
        (_server("run", "--health-port", "18081"), "http://127.0.0.1:18081/healthz"),
        (
            _server("run", "--health-port=18081", env={healthcheck.HEALTH_PORT_ENV: "7"}),
            "http://127.0.0.1:18081/healthz",
        ),
        (_server("run", env={healthcheck.HEALTH_PORT_ENV: "7"}), "http://127.0.0.1:7/healthz"),
        (_server("run", "--health-port", "0"), None),
    ],
)
def test_health_url(server: Server, url: str | None) -> None:
    assert health_url(server, own_env={}) == url


def test_run_falls_back_to_our_own_environment() -> None:
    own = {healthcheck.HEALTH_PORT_ENV: "18081"}
    assert health_url(_server("run"), own_env=own) == "http://127.0.0.1:18081/healthz"


def test_default_ports_are_the_servers_defaults() -> None:
    assert healthcheck.GATEWAY_ADMIN_PORT == sidecar.ADMIN_PORT
    assert healthcheck.HEALTHZ_PATH == sidecar.HEALTHZ_PATH
    assert config.parser({}).get_default("health_port") == healthcheck.OPERATOR_HEALTH_PORT
    assert healthcheck.HEALTH_PORT_ENV == config.ENV_PREFIX + "HEALTH_PORT"


def test_find_servers(tmp_path: Path) -> None:
    proc = _proc(
        tmp_path,
        {
            1: (["/sbin/docker-init", "--", "agent-operator", "gateway"], {}),
            7: ([PYTHON, SCRIPT, "gateway", "--admin-listen", ":19090"], {"A": "b=c"}),
            9: ([PYTHON, SCRIPT, "run"], None),
            12: ([PYTHON, SCRIPT, "healthcheck"], {}),
        },
    )
    found = list(find_servers(proc))
    assert [(s.pid, s.role) for s in found] == [(7, "gateway"), (9, "run")]
    assert found[0].args == ("--admin-listen", ":19090")
    assert found[0].env == {"A": "b=c"}
    assert found[1].env == {}


def test_main_probes_the_server_it_finds(
    tmp_path: Path, server: tuple[ThreadingHTTPServer, type[_Handler]]
) -> None:
    httpd, handler = server
    port = httpd.server_address[1]
    proc = _proc(tmp_path, {40: ([PYTHON, SCRIPT, "gateway", f"--admin-listen=:{port}"], {})})
    assert healthcheck.main([], env={}, proc=proc) == 0
    handler.status = 503
    assert healthcheck.main([], env={}, proc=proc) == 1


def test_every_server_found_must_be_healthy(
    tmp_path: Path, server: tuple[ThreadingHTTPServer, type[_Handler]]
) -> None:
    httpd, _ = server
    port = httpd.server_address[1]
    proc = _proc(
        tmp_path,
        {
            40: ([PYTHON, SCRIPT, "gateway", f"--admin-listen=:{port}"], {}),
            41: ([PYTHON, SCRIPT, "run", "--health-port", str(_free_port())], {}),
        },
    )
    assert healthcheck.main([], env={}, proc=proc) == 1


def test_no_server_is_unhealthy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = _proc(tmp_path, {1: (["sleep", "infinity"], {})})
    assert healthcheck.main([], env={}, proc=proc) == 1
    assert "no `agent-operator run`" in capsys.readouterr().err


def test_health_port_off_is_nothing_to_probe(tmp_path: Path) -> None:
    proc = _proc(tmp_path, {1: ([SCRIPT, "run", "--health-port", "0"], {})})
    assert healthcheck.main([], env={}, proc=proc) == 0


def test_bad_port_is_unhealthy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = _proc(tmp_path, {1: ([SCRIPT, "run"], {healthcheck.HEALTH_PORT_ENV: "http"})})
    assert healthcheck.main([], env={}, proc=proc) == 1
    assert "bad port" in capsys.readouterr().err
