"""A small synchronous client for the few calls the reconciler makes.

Generic JSON in and out (the builders produce plain dicts), through the
official client's ApiClient for authentication and TLS. Server-side apply is
a PATCH with content type application/apply-patch+yaml (JSON is YAML).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from agent_operator import ledger
from agent_operator.api import GROUP, PLURAL, VERSION
from agent_operator.operator.cache import ObjectCache

FIELD_MANAGER: Final = "agent-operator"
TIMEOUT: Final = 30.0  # seconds per request; a hung call must not stall a worker forever
# What YAML refuses raw or reads as a line break (C0 aside: json.dumps escapes it).
_YAML_UNSAFE: Final = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


@dataclass(frozen=True)
class Kind:
    """Where a namespaced kind lives in the API."""

    api_version: str
    kind: str
    plural: str

    def path(self, namespace: str, name: str | None = None, sub: str | None = None) -> str:
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        out = f"{root}/namespaces/{namespace}/{self.plural}"
        if name:
            out += f"/{name}"
        if sub:
            out += f"/{sub}"
        return out


AGENT_DEPLOYMENT: Final = Kind(f"{GROUP}/{VERSION}", "AgentDeployment", PLURAL)
KINDS: Final = {
    k.kind: k
    for k in (
        Kind("v1", "ConfigMap", "configmaps"),
        Kind("v1", "Secret", "secrets"),
        Kind("v1", "Service", "services"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("v1", "ServiceAccount", "serviceaccounts"),
        Kind("rbac.authorization.k8s.io/v1", "Role", "roles"),
        Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
        Kind("v1", "Event", "events"),
        AGENT_DEPLOYMENT,
    )
}
# The spend ledger's records, and the pods whose records they may be (operator/spendledger.py).
SPEND_RECORD: Final = Kind(ledger.RECORD_API_VERSION, ledger.RECORD_KIND, ledger.RECORD_PLURAL)
KINDS.update({k.kind: k for k in (Kind("v1", "Pod", "pods"), SPEND_RECORD)})


def status_message(err: ApiException) -> str:
    """The message of the Status object an API error carries, else its HTTP reason."""
    try:
        status = json.loads(err.body or "")
    except ValueError:
        status = None
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        message: str = status["message"]
        return message
    return str(err.reason or "")


def apply_patch(body: Mapping[str, Any]) -> bytes:
    """An apply body as JSON the API server's YAML parser reads as it reads JSON.

    That parser refuses the surrogate-pair escapes json.dumps writes for characters
    beyond U+FFFF (an emoji in an env value), refuses raw characters it deems not
    printable and folds raw U+0085/U+2028/U+2029 as line breaks. So: UTF-8, those
    few escaped (json.dumps escapes C0 itself).
    A lone surrogate cannot come from the API server (it decodes to valid UTF-8).
    """
    text = _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", json.dumps(body, ensure_ascii=False))
    return text.encode("utf-8", "replace")


class Kube:
    """The calls of one reconcile; every method is blocking (run it in a thread)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    @staticmethod
    def client_from_environment(connections: int = 10) -> client.ApiClient:
        """In-cluster service account, else $KUBECONFIG / ~/.kube/config; a pool of
        `connections` kept-alive connections (one per worker thread: more would wait)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = max(connections, 1)
        return client.ApiClient(configuration)

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster service account, else $KUBECONFIG / ~/.kube/config."""
        return cls(cls.client_from_environment())

    def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any] | None:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*params, _request_timeout=TIMEOUT)
        data: bytes = response.read()  # type: ignore[no-untyped-call]
        if response.status == 404 and method in ("GET", "DELETE"):
            return None
        if not 200 <= response.status < 300:
            raise ApiException(
                status=response.status,
                reason=response.reason,
                body=data.decode(errors="replace") if data else None,
            )
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        return self._call("GET", KINDS[kind].path(namespace, name))

    def get_path(self, path: str) -> dict[str, Any] | None:
        """Any object by its API path, or None when it (or its kind) does not exist."""
        return self._call("GET", path)

    def apply(self, body: Mapping[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply as field manager `manager`, taking over conflicting fields.

        force=True: we send only fields we own, so a conflict means another
        writer changed one of ours and ours must win.
        """
        meta = body["metadata"]
        result = self._call(
            "PATCH",
            KINDS[body["kind"]].path(meta["namespace"], meta["name"]),
            {"fieldManager": manager, "force": "true"},
            apply_patch(body),
            "application/apply-patch+yaml",
        )
        assert result is not None
        return result

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete one object, only if it is still the one we saw (uid precondition)."""
        self._call(
            "DELETE",
            KINDS[kind].path(namespace, name),
            body={"preconditions": {"uid": uid}, "propagationPolicy": "Background"},
            content_type="application/json",
        )

    def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        """Replace the AgentDeployment's finalizers, only if it is still at `resource_version`
        (a finalizer someone else added meanwhile is not lost: the write fails with 409)."""
        result = self._call(
            "PATCH",
            AGENT_DEPLOYMENT.path(namespace, name),
            {"fieldManager": FIELD_MANAGER},
            {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}},
            "application/merge-patch+json",
        )
        assert result is not None
        return result

    def list_objects(
        self, kind: str, namespace: str, selector: str = "", cached: bool = False
    ) -> list[dict[str, Any]]:
        """The items of one namespace's `kind`, filtered by a label selector ("" for all).

        cached: served from the API server's watch cache (resourceVersion=0), not
        etcd: cheaper, and possibly a moment old (for callers a watch keeps current).
        """
        query = {"labelSelector": selector, **({"resourceVersion": "0"} if cached else {})}
        result = self._call("GET", KINDS[kind].path(namespace), query)
        items: list[dict[str, Any]] = (result or {}).get("items") or []
        return items

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object; 409 AlreadyExists raises."""
        meta = body["metadata"]
        result = self._call(
            "POST",
            KINDS[body["kind"]].path(meta["namespace"]),
            body=dict(body),
            content_type="application/json",
        )
        assert result is not None
        return result

    def replace(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace an object (PUT); with metadata.resourceVersion set, a concurrent write
        since that version fails with 409 Conflict."""
        meta = body["metadata"]
        result = self._call(
            "PUT",
            KINDS[body["kind"]].path(meta["namespace"], meta["name"]),
            body=dict(body),
            content_type="application/json",
        )
        assert result is not None
        return result

    def patch_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource of an AgentDeployment; the object after it."""
        return self._call(
            "PATCH",
            AGENT_DEPLOYMENT.path(namespace, name, "status"),
            {"fieldManager": FIELD_MANAGER},
            {"status": dict(patch)},
            "application/merge-patch+json",
        )

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        self._call(
            "POST", KINDS["Event"].path(namespace), body=dict(body), content_type="application/json"
        )


class CachedKube(Kube):
    """A Kube that reads the watched kinds from the watches' index (operator/cache.py)
    and records its own writes there.

    A kind the index does not cover yet (its stream has not listed, or has
    stopped) is read from the API server as before. Secrets are always read
    afresh, even when the index says absent: key state must never be read
    stale (a watch that reconnects lags behind for a moment, and a key Secret
    whose create lost its answer, read as absent, would be issued twice).
    """

    def __init__(self, api: client.ApiClient, cache: ObjectCache) -> None:
        super().__init__(api)
        self.cache = cache
        self._local = threading.local()

    @contextlib.contextmanager
    def fresh_reads(self) -> Iterator[None]:
        """Within: this thread reads from the API server, as without the index (the
        periodic resync: it catches what a watch that silently died did not say)."""
        self._local.fresh = True
        try:
            yield
        finally:
            self._local.fresh = False

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if (
            kind == "Secret"  # key state: never from the index (see the class's docstring)
            or getattr(self._local, "fresh", False)
            or not self.cache.known(kind, namespace)
        ):
            return super().get(kind, namespace, name)
        return self.cache.get(kind, namespace, name)

    def apply(self, body: Mapping[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any]:
        result = super().apply(body, manager)
        self.cache.wrote(body["kind"], result)
        return result

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        super().delete(kind, namespace, name, uid)
        self.cache.deleted(kind, namespace, name)

    def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        result = super().set_finalizers(namespace, name, finalizers, resource_version)
        self.cache.wrote(AGENT_DEPLOYMENT.kind, result)
        return result

    def patch_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        result = super().patch_status(namespace, name, patch)
        if result is not None:
            self.cache.wrote(AGENT_DEPLOYMENT.kind, result)
        return result
