"""`agent-operator healthcheck`: the image's HEALTHCHECK, for whichever sub-command runs.

One image runs either `agent-operator run` (health at `--health-port`, 8081)
or `agent-operator gateway` (health on the admin listener, 9090), and the
Dockerfile's HEALTHCHECK cannot know which. So this command finds the
`run`/`gateway` processes of its container in /proc, reads each one's port
from its own flags and environment, and GETs `/healthz` on loopback: exit 0
when every one answers 2xx, 1 otherwise (refused, timed out, any other
status, no such process). `--url` or AGENT_OPERATOR_HEALTHCHECK_URL skips the
search and probes that URL alone.

Standard library only and no import of the rest of the package: Docker runs
it every 30 s beside the process it checks. The default ports are the ones
`sidecar.ADMIN_PORT` and `agent-operator run --health-port` use (a unit test
keeps them equal).
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

URL_ENV = "AGENT_OPERATOR_HEALTHCHECK_URL"
HEALTH_PORT_ENV = "AGENT_OPERATOR_HEALTH_PORT"
OPERATOR_HEALTH_PORT = 8081  # agent-operator run --health-port
GATEWAY_ADMIN_PORT = 9090  # sidecar.ADMIN_PORT
HEALTHZ_PATH = "/healthz"
DEFAULT_TIMEOUT_SECONDS = 3.0  # below the HEALTHCHECK's --timeout, so our message is kept

# how the server's argv names the program: the console script, or `python -m`
_PROGRAMS = ("agent-operator", "agent_operator.cli")
_ROLES = ("run", "gateway")


@dataclass(frozen=True)
class Server:
    """An `agent-operator run|gateway` process found in /proc."""

    pid: int
    role: str  # "run" or "gateway"
    args: tuple[str, ...]  # its flags, after the sub-command
    env: Mapping[str, str]  # its environment (empty when unreadable)


def role_of(argv: Sequence[str]) -> tuple[str, tuple[str, ...]] | None:
    """(sub-command, its flags) when `argv` runs `agent-operator run|gateway`, else None."""
    # The program comes first, or after the interpreter and its options: exec
    # of the script gives `python /path/agent-operator run`, or `python -m
    # agent_operator.cli run`. An init (`docker-init -- agent-operator run`)
    # or a shell is not the server itself.
    for i, word in enumerate(argv):
        if os.path.basename(word) in _PROGRAMS:
            role = argv[i + 1] if i + 1 < len(argv) else ""
            return (role, tuple(argv[i + 2 :])) if role in _ROLES else None
        interpreter = i == 0 and os.path.basename(word).startswith("python")
        if not (interpreter or word.startswith("-")):
            return None
    return None


def flag_value(args: Sequence[str], name: str) -> str | None:
    """The last value of `--name V` or `--name=V` in `args` (argparse: the last one wins)."""
    value = None
    for i, word in enumerate(args):
        if word == name and i + 1 < len(args):
            value = args[i + 1]
        elif word.startswith(name + "="):
            value = word[len(name) + 1 :]
    return value


def _loopback(host: str) -> str:
    """The URL host that reaches a listener bound to `host` (as `--admin-listen` reads it)."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def health_url(server: Server, own_env: Mapping[str, str]) -> str | None:
    """The `/healthz` URL of `server`; None when its health endpoint is switched off.

    Raises ValueError on a port that is not a number.
    """
    if server.role == "gateway":
        listen = flag_value(server.args, "--admin-listen") or f"0.0.0.0:{GATEWAY_ADMIN_PORT}"
        host, _, port = listen.rpartition(":")
        return f"http://{_loopback(host)}:{int(port)}{HEALTHZ_PATH}"
    # run: flag, else its environment (flags win, as in operator/config.py)
    env = server.env or own_env
    flag = flag_value(server.args, "--health-port")
    health_port = int(flag if flag is not None else env.get(HEALTH_PORT_ENV, OPERATOR_HEALTH_PORT))
    if health_port == 0:
        return None
    return f"http://127.0.0.1:{health_port}{HEALTHZ_PATH}"


def _read_nul_list(path: Path) -> list[str]:
    return [part.decode(errors="replace") for part in path.read_bytes().split(b"\0") if part]


def find_servers(proc: Path = Path("/proc")) -> Iterator[Server]:
    """The `agent-operator run|gateway` processes visible in `proc`, lowest pid first."""
    pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit())
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            found = role_of(_read_nul_list(proc / str(pid) / "cmdline"))
        except OSError:  # exited meanwhile
            continue
        if found is None:
            continue
        try:
            pairs = _read_nul_list(proc / str(pid) / "environ")
        except OSError:  # another user's process: fall back to our own environment
            pairs = []
        env = {name: value for name, _, value in (p.partition("=") for p in pairs)}
        yield Server(pid=pid, role=found[0], args=found[1], env=env)


def probe(url: str, timeout: float) -> str | None:
    """GET `url`; None when it answers 2xx, else what went wrong.

    `timeout` (seconds) bounds the connection and each read of the answer.
    http.client, not urllib: a proxy from the environment must not be used.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return f"not an http:// URL: {url}"
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"User-Agent": "agent-operator-healthcheck"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as err:
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    finally:
        conn.close()
    return None if 200 <= status < 300 else f"HTTP {status}"


def _targets(url: str | None, own_env: Mapping[str, str], proc: Path) -> list[str] | str:
    """URLs to probe, or why there are none to probe."""
    if url:
        return [url]
    if not proc.is_dir():
        return f"no {proc} to find the server in: set {URL_ENV}"
    servers = list(find_servers(proc))
    if not servers:
        return "no `agent-operator run` or `agent-operator gateway` process found"
    urls = []
    for server in servers:
        try:
            found = health_url(server, own_env)
        except ValueError as err:
            return f"pid {server.pid} ({server.role}): bad port: {err}"
        if found is not None and found not in urls:
            urls.append(found)
    return urls


def main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    proc: Path = Path("/proc"),
) -> int:
    """Exit status 0: every server found is healthy (or has its health endpoint off)."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="agent-operator healthcheck",
        description="GET /healthz of the `agent-operator run` or `gateway` process of this "
        "container (the image's HEALTHCHECK). Exit 0 when it answers 2xx, 1 otherwise.",
    )
    parser.add_argument(
        "--url",
        default=env.get(URL_ENV) or None,
        help=f"probe this URL instead of finding the server (env {URL_ENV})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds for the connection and for the answer",
    )
    args = parser.parse_args(argv)
    targets = _targets(args.url, env, proc)
    if isinstance(targets, str):
        print(f"unhealthy: {targets}", file=sys.stderr)
        return 1
    if not targets:
        print("healthy: health endpoint switched off (--health-port 0), nothing to probe")
        return 0
    status = 0
    for url in targets:
        problem = probe(url, args.timeout)
        if problem is None:
            print(f"healthy: {url}")
        else:
            print(f"unhealthy: {url}: {problem}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
