"""Run one pod of an AgentDeployment as local processes (demo and test tooling).

No kubelet runs on the local control plane, so no container ever runs. This
does a kubelet's job for one Pod of the AgentDeployment's Deployment:

    .venv/bin/python hack/podrun.py NAMESPACE AGENTDEPLOYMENT --workdir DIR \
        [--kubeconfig FILE] [--detach] [--pod NAME]

- `gateway`: exactly the rendered command and env. Only what a pod provides
  differently is remapped: mount paths -> directories under DIR, the pod's
  own ports -> free loopback ports where taken (every listener on 127.0.0.1:
  the host's interfaces are not the pod's), KUBERNETES_SERVICE_HOST/PORT ->
  the kubeconfig's API server, the downward API -> the Pod's name and uid.
- `agent`: examples/agent/app.py in place of the image, with the agent
  container's env (OPENAI_BASE_URL names the local outbound door).
- `provider`: the fake OpenAI (tests/fakes/upstream.py) on the loopback
  address spec.model.baseURL names; another baseURL is called as it is.

The Pod is a real one of the Deployment (Pending, or Running on a kwok node:
either way none of its containers runs). Its name and uid go into the
gateway's SpendRecords and its ServiceAccount token is bound to it
(TokenRequest), so the admission policy and the operator's fold see a live
pod; when the Pod goes (a rollout), the run ends, as its containers would.
Volumes are laid out the way the kubelet does it (the `..data` swap of
tests/fakes/volumes.py) from the live Secrets and ConfigMaps, read every
second, so a key rotation reaches the running gateway as in a cluster (only
sooner).

Once all containers are ready, DIR/addresses.json holds the local URLs; logs
are DIR/*.log. Stop with SIGTERM or SIGINT (`kill $(cat DIR/podrun.pid)`).
Nothing here prints key material: volumes are reported by file name only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

REPO: Final = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as hack/podrun.py: tests.fakes lives at the root
    sys.path.insert(0, str(REPO))

from kubernetes import client, config  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402
from tests.fakes.volumes import KubeVolume  # noqa: E402
from urllib3.exceptions import HTTPError  # noqa: E402

from agent_operator.sidecar import SERVICE_ACCOUNT_DIR  # noqa: E402

AGENT_APP: Final = REPO / "examples" / "agent" / "app.py"
REVISION: Final = "deployment.kubernetes.io/revision"
# What a container gets from its image rather than its spec; nothing else of ours leaks in.
BASE_ENV: Final = ("PATH", "HOME", "LANG", "TZ")
# Downward-API fields whose pod values mean nothing here (a Pending pod has no IP).
LOCAL_FIELDS: Final = {"status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}
LOOPBACK: Final = ("127.0.0.1", "localhost", "::1")
POLL_SECONDS: Final = 1.0
READY_TIMEOUT_SECONDS: Final = 60.0
STOP_GRACE_SECONDS: Final = 10.0

Obj = dict[str, Any]
Get = Callable[[str, str], Obj | None]  # (kind, name) -> object in the pod's namespace


class PodError(Exception):
    """The pod cannot run here (yet): a missing object, an unsupported field."""


# --- the pod ---------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = _meta(owner).get("uid")
    refs = _meta(obj).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def pick_pod(
    deployment: Obj, replicasets: Iterable[Obj], pods: Iterable[Obj], name: str | None = None
) -> Obj | None:
    """A live Pod of the Deployment's current ReplicaSet (`name` if given; else the
    first by name), or None."""
    revision = (_meta(deployment).get("annotations") or {}).get(REVISION)
    current = [
        rs
        for rs in replicasets
        if controlled_by(rs, deployment)
        and (_meta(rs).get("annotations") or {}).get(REVISION) == revision
    ]
    live = sorted(
        (
            p
            for p in pods
            if any(controlled_by(p, rs) for rs in current)
            and not _meta(p).get("deletionTimestamp")
            and (name is None or _meta(p).get("name") == name)
        ),
        key=lambda p: str(_meta(p).get("name")),
    )
    return live[0] if live else None


def container(pod_spec: Mapping[str, Any], name: str) -> Obj:
    for c in pod_spec.get("containers") or []:
        if c.get("name") == name:
            found: Obj = c
            return found
    raise PodError(f"the pod has no container {name!r}")


# --- ports: the pod's own, remapped to free loopback ports ------------------------

_PORT_IN_ADDRESS = re.compile(
    r"(?:(?<![\w.:\]-])(?:0\.0\.0\.0|127\.0\.0\.1|localhost|\[::\]|\[::1\])|^):(\d{1,5})(?!\d)"
)


def listen_ports(argv: Sequence[str]) -> dict[str, int]:
    """Ports of `--NAME-listen HOST:PORT` flags (either form), by NAME."""
    found: dict[str, int] = {}
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if not (flag.startswith("--") and flag.endswith("-listen")):
            continue
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        port = value.rpartition(":")[2]
        if port.isdigit():
            found[flag[2 : -len("-listen")]] = int(port)
    return found


def probe_port(c: Mapping[str, Any]) -> int | None:
    """The port of a container's readiness (or liveness) httpGet probe, when a number."""
    for kind in ("readinessProbe", "livenessProbe"):
        port = ((c.get(kind) or {}).get("httpGet") or {}).get("port")
        if isinstance(port, int):
            return port
    return None


def pod_ports(pod_spec: Mapping[str, Any]) -> list[int]:
    """The ports the pod's containers listen on: declared, probed, or in a listen flag."""
    ports: set[int] = set()
    for c in pod_spec.get("containers") or []:
        ports |= {p["containerPort"] for p in c.get("ports") or []}
        ports |= set(listen_ports([*c.get("command", []), *c.get("args", [])]).values())
        if (port := probe_port(c)) is not None:
            ports.add(port)
    return sorted(ports)


def assign_ports(
    wanted: Iterable[int], is_free: Callable[[int], bool], fresh: Callable[[], int]
) -> dict[int, int]:
    """pod port -> local port: the same where it is free here, else a fresh one."""
    return {port: port if is_free(port) else fresh() for port in wanted}


def remap_addresses(text: str, ports: Mapping[int, int]) -> str:
    """Pod-local `HOST:PORT`s (loopback, any-address or empty host) -> 127.0.0.1:local port."""

    def local(match: re.Match[str]) -> str:
        port = int(match.group(1))
        return f"127.0.0.1:{ports[port]}" if port in ports else match.group(0)

    return _PORT_IN_ADDRESS.sub(local, text)


# --- paths: mounts -> local directories -------------------------------------------


def mount_dirs(c: Mapping[str, Any], volume_root: Path) -> dict[str, Path]:
    """mountPath -> the local directory of its volume (subPath below it)."""
    return {
        m["mountPath"]: volume_root / m["name"] / m.get("subPath", "")
        for m in c.get("volumeMounts") or []
    }


def remap_paths(text: str, mounts: Mapping[str, Path]) -> str:
    """A mount path (or a path below it) at the start of `text` or after `=` -> local."""
    if not mounts:
        return text
    names = "|".join(re.escape(p.rstrip("/")) for p in sorted(mounts, key=len, reverse=True))
    pattern = re.compile(rf"(?<![^=:])({names})(?=/|$)")
    by_path = {p.rstrip("/"): local for p, local in mounts.items()}
    return pattern.sub(lambda m: str(by_path[m.group(1)]).rstrip("/"), text)


# --- environment ---------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names only; `$$` is a literal `$`."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _REFERENCE.sub(sub, value)


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward-API fieldPath of `pod` (`metadata.uid`, `metadata.labels['k']`, ...)."""
    if path in LOCAL_FIELDS:
        return LOCAL_FIELDS[path]
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if keyed:
        return str((_meta(pod).get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    value: Any = pod
    for part in path.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return str(value)


def object_data(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's or ConfigMap's keys as text (Secret data is base64)."""
    data: Mapping[str, str] = obj.get("data") or {}
    if kind == "Secret":
        return {k: base64.b64decode(v).decode("utf-8") for k, v in data.items()}
    return dict(data)


def _key(get: Get, kind: str, ref: Mapping[str, Any]) -> str | None:
    obj = get(kind, ref["name"])
    value = None if obj is None else object_data(kind, obj).get(ref["key"])
    if value is None and not ref.get("optional"):
        raise PodError(f"{kind} {ref['name']} has no key {ref['key']!r}")
    return value


def container_env(
    c: Mapping[str, Any], pod: Mapping[str, Any], get: Get, base: Mapping[str, str]
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: `base` (image and
    service variables), then spec.env in order, each able to use the ones before."""
    env = dict(base)
    for var in c.get("env") or []:
        source = var.get("valueFrom")
        value: str | None
        if source is None:
            value = expand(var.get("value", ""), env)
        elif "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source:
            value = _key(get, "Secret", source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = _key(get, "ConfigMap", source["configMapKeyRef"])
        else:
            raise PodError(f"env {var['name']}: {sorted(source)} is not supported here")
        if value is not None:
            env[var["name"]] = value
    if c.get("envFrom"):
        raise PodError(f"container {c.get('name')}: envFrom is not supported here")
    return env


def service_env(server: str) -> dict[str, str]:
    """KUBERNETES_SERVICE_HOST/PORT of every container: here, the kubeconfig's server."""
    parts = urlsplit(server)
    return {
        "KUBERNETES_SERVICE_HOST": parts.hostname or "",
        "KUBERNETES_SERVICE_PORT": str(parts.port or 443),
    }


def remap_env(
    env: Mapping[str, str], mounts: Mapping[str, Path], ports: Mapping[int, int]
) -> dict[str, str]:
    return {k: remap_addresses(remap_paths(v, mounts), ports) for k, v in env.items()}


# --- the gateway's command line --------------------------------------------------------


def local_argv(
    argv: Sequence[str],
    mounts: Mapping[str, Path],
    ports: Mapping[int, int],
    executables: Mapping[str, str],
) -> list[str]:
    """The rendered command with mounts and ports remapped, argv[0] resolved here.

    The gateway finds its token at SERVICE_ACCOUNT_DIR without a flag (the
    operator leaves the default out), so a remapped one is passed explicitly.
    """
    out = [remap_addresses(remap_paths(arg, mounts), ports) for arg in argv]
    out[0] = executables.get(out[0], out[0])
    named = any(SERVICE_ACCOUNT_DIR in arg for arg in argv)
    if SERVICE_ACCOUNT_DIR in mounts and not named:
        out += ["--service-account-dir", str(mounts[SERVICE_ACCOUNT_DIR])]
    return out


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def loopback_port(url: str) -> int | None:
    """The port of an http URL on this machine's loopback; None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        return None
    return parts.port or 80


# --- volumes --------------------------------------------------------------------------


def _source_files(kind: str, name: str, source: Mapping[str, Any], get: Get) -> dict[str, str]:
    obj = get(kind, name)
    if obj is None:
        if source.get("optional"):
            return {}
        raise PodError(f"{kind} {name} not found")
    data = object_data(kind, obj)
    items = source.get("items")
    if items is None:
        return data
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


def volume_files(
    volume: Mapping[str, Any], get: Get, pod: Mapping[str, Any], token: str
) -> dict[str, str] | None:
    """The files of a Secret, ConfigMap, downwardAPI or projected volume; None for
    any other kind (emptyDir: a plain directory)."""
    if "secret" in volume:
        return _source_files("Secret", volume["secret"]["secretName"], volume["secret"], get)
    if "configMap" in volume:
        return _source_files("ConfigMap", volume["configMap"]["name"], volume["configMap"], get)
    sources: Sequence[Mapping[str, Any]]
    if "downwardAPI" in volume:
        sources = [volume]
    elif "projected" in volume:
        sources = volume["projected"].get("sources") or []
    else:
        return None
    files: dict[str, str] = {}
    for source in sources:
        if "serviceAccountToken" in source:
            files[source["serviceAccountToken"]["path"]] = token
        elif "secret" in source:
            files |= _source_files("Secret", source["secret"]["name"], source["secret"], get)
        elif "configMap" in source:
            files |= _source_files(
                "ConfigMap", source["configMap"]["name"], source["configMap"], get
            )
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                files[item["path"]] = field_value(pod, item["fieldRef"]["fieldPath"])
    return files


def referenced_objects(volumes: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap the volumes read."""
    found: set[tuple[str, str]] = set()
    for volume in volumes:
        sources = (volume.get("projected") or {}).get("sources") or [volume]
        for source in sources:
            if "secret" in source:
                found.add(
                    ("Secret", source["secret"].get("secretName") or source["secret"]["name"])
                )
            if "configMap" in source:
                found.add(("ConfigMap", source["configMap"]["name"]))
    return found


def token_source(volumes: Iterable[Mapping[str, Any]]) -> Obj | None:
    """The (first) projected serviceAccountToken source of the pod's volumes."""
    for volume in volumes:
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "serviceAccountToken" in source:
                found: Obj = source["serviceAccountToken"]
                return found
    return None


def token_due(issued: float, expires: float, now: float) -> bool:
    """The kubelet's rule: a new token at 80% of the old one's life (epoch seconds)."""
    return now >= issued + 0.8 * (expires - issued)


# --- the API server ---------------------------------------------------------------------


class Kube:
    """The few calls a kubelet makes for one pod, as plain dicts."""

    def __init__(self, kubeconfig: str | None, namespace: str) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.namespace = namespace
        self.server: str = self.api.configuration.host

    def get(self, kind: str, name: str) -> Obj | None:
        read = {
            "Secret": self.core.read_namespaced_secret,
            "ConfigMap": self.core.read_namespaced_config_map,
            "Pod": self.core.read_namespaced_pod,
            "Deployment": self.apps.read_namespaced_deployment,
        }[kind]
        try:
            return _decode(read(name, self.namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def items(self, kind: str, selector: Mapping[str, str]) -> list[Obj]:
        listing = {
            "Pod": self.core.list_namespaced_pod,
            "ReplicaSet": self.apps.list_namespaced_replica_set,
        }[kind]
        labels = ",".join(f"{k}={v}" for k, v in selector.items())
        items: list[Obj] = _decode(
            listing(self.namespace, label_selector=labels, _preload_content=False)
        )["items"]
        return items

    def token(self, pod: Obj, source: Mapping[str, Any]) -> tuple[str, float]:
        """A token of the pod's ServiceAccount bound to the pod; (token, expiry epoch s)."""
        spec: Obj = {
            "expirationSeconds": source.get("expirationSeconds", 3600),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": _meta(pod)["name"],
                "uid": _meta(pod)["uid"],
            },
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        answer = _decode(
            self.core.create_namespaced_service_account_token(
                pod["spec"]["serviceAccountName"],
                self.namespace,
                body,  # type: ignore[arg-type]  # a dict is sent as it is
                _preload_content=False,
            )
        )
        expires = datetime.fromisoformat(answer["status"]["expirationTimestamp"]).timestamp()
        return answer["status"]["token"], expires


def _decode(response: Any) -> Obj:
    decoded: Obj = json.loads(response.data)
    return decoded


# --- running it -------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"podrun: {message}", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def fresh_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


def start(
    name: str, argv: Sequence[str], env: Mapping[str, str], workdir: Path, cwd: Path
) -> Child:
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            # a terminal's Ctrl-C reaches podrun only, which then stops them all
            start_new_session=True,
        )
    say(f"{name} started (pid {process.pid}, log {log})")
    return Child(name, process, log)


def stop_all(children: Sequence[Child]) -> None:
    """SIGTERM to all at once (as the kubelet does to a pod), SIGKILL after the grace."""
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(max(0.0, deadline - time.monotonic()))
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()
        say(f"{child.name} stopped ({child.process.returncode})")


def wait_ready(child: Child, url: str, stop: threading.Event) -> None:
    """Until `url` answers 200, like a readiness probe; PodError if the child exits."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not stop.is_set():
        if child.process.poll() is not None:
            raise PodError(f"{child.name} exited ({child.process.returncode}): see {child.log}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as answer,
        ):
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise PodError(f"{child.name} not ready at {url} after {READY_TIMEOUT_SECONDS:.0f} s")
        stop.wait(0.2)


class Volumes:
    """The pod's volumes under one directory, kept in step with the live objects."""

    def __init__(self, kube: Kube, pod: Obj, root: Path) -> None:
        self.kube, self.pod, self.root = kube, pod, root
        self.specs: list[Obj] = pod["spec"].get("volumes") or []
        self.objects = referenced_objects(self.specs)
        self.token_source = token_source(self.specs)
        self.token, self.issued, self.expires = "", 0.0, 0.0
        self.mounted: dict[str, KubeVolume] = {}
        self.files: dict[str, dict[str, str]] = {}

    def sync(self) -> None:
        """Read the objects and the token once; swap the volumes whose files changed."""
        now = time.time()
        if self.token_source is not None and token_due(self.issued, self.expires, now):
            self.token, self.expires = self.kube.token(self.pod, self.token_source)
            self.issued = now
        live = {(kind, name): self.kube.get(kind, name) for kind, name in self.objects}

        def get(kind: str, name: str) -> Obj | None:
            return live.get((kind, name))

        for spec in self.specs:
            name = spec["name"]
            files = volume_files(spec, get, self.pod, self.token)
            if files is None:
                (self.root / name).mkdir(parents=True, exist_ok=True)
            elif name not in self.mounted:
                self.mounted[name] = KubeVolume(self.root / name, files)
            elif files != self.files[name]:
                self.mounted[name].update(files)
                changed = sorted(
                    k
                    for k in files.keys() | self.files[name].keys()
                    if files.get(k) != self.files[name].get(k)
                )
                say(f"volume {name} updated: {', '.join(changed)}")
            if files is not None:
                self.files[name] = files


@dataclass
class Plan:
    """What runs: argv and env per child, the addresses to publish."""

    commands: dict[str, tuple[list[str], dict[str, str]]]
    ready: dict[str, str]  # child -> readiness URL
    addresses: Obj


def ready_url(c: Mapping[str, Any], ports: Mapping[int, int]) -> str | None:
    """The local URL of a container's httpGet readiness probe."""
    probe = (c.get("readinessProbe") or {}).get("httpGet") or {}
    port = probe.get("port")
    if not isinstance(port, int) or port not in ports:
        return None
    return f"http://127.0.0.1:{ports[port]}{probe.get('path', '/')}"


def plan(
    pod: Obj, server: str, root: Path, ports: Mapping[int, int], base: Mapping[str, str], get: Get
) -> Plan:
    """Argv and env of each child for `pod`, its volumes under `root`, and the addresses."""
    spec = pod["spec"]
    service = service_env(server)
    gateway, agent = container(spec, "gateway"), container(spec, "agent")
    g_mounts, a_mounts = mount_dirs(gateway, root), mount_dirs(agent, root)
    executables = {"agent-operator": str(Path(sys.executable).parent / "agent-operator")}
    rendered = [*gateway.get("command", []), *gateway.get("args", [])]
    g_argv = local_argv(rendered, g_mounts, ports, executables)
    g_env = remap_env(container_env(gateway, pod, get, {**base, **service}), g_mounts, ports)
    a_env = remap_env(container_env(agent, pod, get, {**base, **service}), a_mounts, ports)
    # the app stands for the image, which listens on spec.port (what the probes name)
    agent_port = ports[probe_port(agent) or 8000]
    a_argv = [sys.executable, str(AGENT_APP), "--host", "127.0.0.1", "--port", str(agent_port)]
    commands = {"agent": (a_argv, a_env), "gateway": (g_argv, g_env)}
    probed = {"agent": ready_url(agent, ports), "gateway": ready_url(gateway, ports)}
    ready = {name: url for name, url in probed.items() if url}
    listen = {name: ports[port] for name, port in listen_ports(rendered).items()}
    upstream = flag_value(rendered, "--upstream-url") or ""
    provider = loopback_port(upstream)
    addresses: Obj = {
        "pod": _meta(pod)["name"],
        "namespace": _meta(pod)["namespace"],
        # inbound: what the Service's port reaches; admin: health and /metrics
        **{f"gateway_{name}": f"http://127.0.0.1:{port}" for name, port in listen.items()},
        "gateway_metrics": f"http://127.0.0.1:{listen['admin']}/metrics"
        if "admin" in listen
        else None,
        "agent": f"http://127.0.0.1:{agent_port}",
        "provider": f"http://127.0.0.1:{provider}" if provider else None,
        "upstream_url": upstream,
    }
    if provider is not None:
        if provider in ports:
            raise PodError(f"spec.model.baseURL {upstream} is on a port of the pod itself")
        fake = [sys.executable, "-m", "tests.fakes.upstream", "--host", "127.0.0.1"]
        commands = {"provider": ([*fake, "--port", str(provider)], dict(base)), **commands}
        ready = {"provider": f"http://127.0.0.1:{provider}/v1/models", **ready}
    return Plan(commands, ready, addresses)


def volume_root(workdir: Path, pod: Mapping[str, Any]) -> Path:
    """One directory per pod uid: its emptyDirs (the spend journal) live as long as it."""
    return workdir / "volumes" / str(_meta(pod)["uid"])


def find_pod(kube: Kube, agent: str, name: str | None, stop: threading.Event) -> Obj:
    """A live Pod of Deployment `agent`, waiting up to READY_TIMEOUT_SECONDS for one."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not stop.is_set():
        deployment = kube.get("Deployment", agent)
        owners = (_meta(deployment or {}).get("ownerReferences")) or []
        if not any(o.get("kind") == "AgentDeployment" and o.get("name") == agent for o in owners):
            raise PodError(f"no Deployment {kube.namespace}/{agent} of an AgentDeployment {agent}")
        assert deployment is not None
        selector = deployment["spec"]["selector"]["matchLabels"]
        pods = kube.items("Pod", selector)
        pod = pick_pod(deployment, kube.items("ReplicaSet", selector), pods, name)
        if pod is not None:
            return pod
        if time.monotonic() > deadline:
            raise PodError(
                f"no live Pod of Deployment {agent}'s current ReplicaSet"
                + (f" named {name}" if name else "")
                + " (is kube-controller-manager running?)"
            )
        stop.wait(1.0)
    raise PodError("stopped")


def forget_other_pods(root: Path) -> None:
    """Volumes of pods run here before go, keys included, as the kubelet removes a
    deleted pod's; the pod's own (its spend journal) stays for a restart."""
    if root.parent.is_dir():
        for old in root.parent.iterdir():
            if old != root:
                shutil.rmtree(old)


def first_sync(volumes: Volumes, stop: threading.Event) -> None:
    """Volumes in place before any container starts; a Secret the operator has not
    written yet is waited for, as the kubelet keeps a pod in ContainerCreating."""
    volumes.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # keys inside
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            volumes.sync()
            return
        except PodError as exc:
            if time.monotonic() > deadline or stop.is_set():
                raise
            say(f"waiting for the volumes: {exc}")
            stop.wait(2.0)


def running(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def run(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pidfile, published = workdir / "podrun.pid", workdir / "addresses.json"
    if running(pidfile):
        say(f"already running (pid {pidfile.read_text().strip()}) for {workdir}")
        return 1
    pidfile.write_text(f"{os.getpid()}\n")
    published.unlink(missing_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    children: dict[str, Child] = {}
    status = 0
    try:
        kube = Kube(args.kubeconfig, args.namespace)
        pod = find_pod(kube, args.agentdeployment, args.pod, stop)
        uid = _meta(pod)["uid"]
        say(f"running pod {args.namespace}/{_meta(pod)['name']} (uid {uid})")
        volumes = Volumes(kube, pod, volume_root(workdir, pod))
        forget_other_pods(volumes.root)
        first_sync(volumes, stop)
        ports = assign_ports(pod_ports(pod["spec"]), port_free, fresh_port)
        say("pod ports -> local: " + ", ".join(f"{p}->{q}" for p, q in ports.items()))
        base = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        todo = plan(pod, kube.server, volume_root(workdir, pod), ports, base, kube.get)
        if todo.addresses["provider"] is None:
            say(f"no fake provider: the gateway calls {todo.addresses['upstream_url']} itself")
        for name, (argv, env) in todo.commands.items():
            # the fake runs as `-m tests.fakes.upstream`: from the repository's root
            cwd = REPO if name == "provider" else workdir
            children[name] = start(name, argv, env, workdir, cwd)
        for name, url in todo.ready.items():
            wait_ready(children[name], url, stop)
        if stop.is_set():
            return 0
        addresses = {**todo.addresses, "workdir": str(workdir), "pid": os.getpid()}
        partial = published.with_suffix(".tmp")
        partial.write_text(json.dumps(addresses, indent=2) + "\n")
        partial.rename(published)  # readers never see half a file
        say(f"ready; addresses in {published}:")
        for key, value in addresses.items():
            print(f"  {key}: {value}", flush=True)
        status = keep(kube, pod, volumes, children, stop)
    except (PodError, ApiException, HTTPError) as exc:
        say(f"error: {type(exc).__name__}: {exc}"[:500])
        status = 1
    finally:
        stop_all(list(children.values()))
        published.unlink(missing_ok=True)
        pidfile.unlink(missing_ok=True)
    return status


def keep(
    kube: Kube, pod: Obj, volumes: Volumes, children: Mapping[str, Child], stop: threading.Event
) -> int:
    """Every POLL_SECONDS: children alive, the Pod still there, volumes in step."""
    last_trouble = ""
    while not stop.wait(POLL_SECONDS):
        for child in children.values():
            if child.process.poll() is not None:
                say(f"{child.name} exited ({child.process.returncode}): see {child.log}")
                return 1
        try:
            live = kube.get("Pod", _meta(pod)["name"])
            meta = _meta(live or {})
            if meta.get("uid") != _meta(pod)["uid"] or meta.get("deletionTimestamp"):
                say("the pod is being deleted (a rollout?): its containers stop; run podrun again")
                return 0
            volumes.sync()
            last_trouble = ""
        except (PodError, ApiException, HTTPError, OSError) as exc:
            trouble = f"{type(exc).__name__}: {getattr(exc, 'status', '')} {exc}"[:200]
            if trouble != last_trouble:  # the volumes keep their content meanwhile
                say(f"could not refresh the volumes ({trouble})")
            last_trouble = trouble
    return 0


def detach(argv: Sequence[str], workdir: Path) -> int:
    """Run in the background (log: DIR/podrun.log); return once ready or failed."""
    workdir.mkdir(parents=True, exist_ok=True)
    published, log = workdir / "addresses.json", workdir / "podrun.log"
    if running(workdir / "podrun.pid"):
        print(f"podrun: already running for {workdir}", file=sys.stderr)
        return 1
    published.unlink(missing_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    while process.poll() is None and not published.exists():
        time.sleep(0.2)
    if not published.exists():
        print(log.read_text()[-3000:], file=sys.stderr)
        return 1
    print(published.read_text(), end="")
    print(f"podrun running (pid {process.pid}, log {log}); stop: kill $(cat {workdir}/podrun.pid)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/podrun.py", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("namespace")
    parser.add_argument("agentdeployment")
    parser.add_argument("--workdir", type=Path, required=True, help="volumes, logs, addresses.json")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument("--pod", help="which Pod of the Deployment (default: the first by name)")
    parser.add_argument(
        "--detach", action="store_true", help="run in the background; return once ready"
    )
    args = parser.parse_args(argv)
    if args.detach:
        rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--detach"]
        return detach(rest, args.workdir.resolve())
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
