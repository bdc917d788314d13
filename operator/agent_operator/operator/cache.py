"""What the watches have seen: an informer-style index of the objects a reconcile reads.

kopf lists and then watches every kind the operator reconciles (health.py's
hook sees each raw event before kopf dispatches it); this index keeps the
latest of each object, so a reconcile reads memory instead of sending GETs.
Once a stream has finished a listing, an object it does not hold does not
exist: a new AgentDeployment's children cost no 404s.

Objects labelled as ours are kept whole; others (and Secrets) only by their
metadata, which is all a reconcile needs of them: that the name is taken, and
by whom. Our own writes are recorded as they are answered (a
write-through), so a reconcile that runs before their watch event never sees
the object as it was, and the event itself is recognised as our echo.

Bodies are held as compact JSON and decoded on each read: a thousand
AgentDeployments' children take about a third of the memory they take as
Python dicts, a reconcile decodes the few it reads in well under a
millisecond, and no reader can change what another reads.

Pure bookkeeping: no I/O, no kopf, no asyncio; safe to read from worker
threads (single dict operations under the GIL, and a lock for the rest).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Mapping
from typing import Any, Final

Ref = tuple[str, str, str]  # (kind, namespace, name)

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
_STUB_FIELDS: Final = ("name", "namespace", "uid", "resourceVersion", "labels", "ownerReferences")


def _version(body: Mapping[str, Any]) -> int | None:
    """The resourceVersion as a number (etcd's revision), None when it is not one."""
    value = (body.get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(value))
    except ValueError:
        return None


class ObjectCache:
    """The latest body of every object of the watched kinds, by (kind, namespace, name).

    `ours`: the value of app.kubernetes.io/managed-by on the objects we write;
    `whole`: kinds kept whole whatever their labels (the AgentDeployments);
    `metadata_only`: kinds kept by their metadata even when ours (Secrets: key
    material stays out of the index, and key state is read afresh anyway);
    `field_owners`: kinds kept with their managedFields (the others drop them).
    Each read decodes a fresh copy.
    """

    def __init__(
        self,
        ours: str,
        whole: Collection[str] = (),
        metadata_only: Collection[str] = (),
        field_owners: Collection[str] = (),
    ) -> None:
        self.ours = ours
        self.whole = frozenset(whole)
        self.metadata_only = frozenset(metadata_only)
        # kinds whose managedFields a reconcile reads (the rest drop them: the bulk of
        # a small object's body, and memory at a thousand AgentDeployments)
        self.field_owners = frozenset(field_owners)
        self._objects: dict[Ref, bytes] = {}  # compact JSON
        self._versions: dict[Ref, int | None] = {}
        # (kind, namespace or None for every namespace) whose listing is complete
        self._listed: set[tuple[str, str | None]] = set()
        # listings under way: what each has seen so far, to drop what it did not
        self._listing: dict[tuple[str, str | None], set[Ref]] = {}
        # resourceVersions our own writes produced, per object (their watch events are echoes)
        self._written: dict[Ref, str] = {}
        self._lock = threading.Lock()

    # -- fed by the watch streams ----------------------------------------------------------

    def listing(self, kind: str, scope: str | None) -> None:
        """A stream (re)starts its listing of `kind` in `scope` (None: every namespace)."""
        with self._lock:
            self._listed.discard((kind, scope))
            self._listing[(kind, scope)] = set()

    def listed(self, kind: str, scope: str | None) -> None:
        """The listing is over: what it did not return is gone (deleted during a gap)."""
        with self._lock:
            seen = self._listing.pop((kind, scope), set())
            for ref in [r for r in self._objects if r[0] == kind and r not in seen]:
                if scope is None or ref[1] == scope:
                    self._drop(ref)
            self._listed.add((kind, scope))

    def ended(self, kind: str, scope: str | None) -> None:
        """The stream stopped: its contents may go stale until it lists again."""
        with self._lock:
            self._listed.discard((kind, scope))
            self._listing.pop((kind, scope), None)

    def observe(self, kind: str, scope: str | None, event_type: str | None, body: Any) -> None:
        """One raw event (type None: an object of a listing)."""
        if not isinstance(body, Mapping):
            return
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            return
        ref = (kind, namespace, name)
        with self._lock:
            seen = self._listing.get((kind, scope))
            if seen is not None:
                seen.add(ref)
            if event_type == "DELETED":
                self._drop(ref)
                return
            self._store(ref, body)

    # -- read and written by reconciles ----------------------------------------------------

    def known(self, kind: str, namespace: str) -> bool:
        """True when a complete listing covers `kind` in `namespace`: a miss means absent."""
        listed = self._listed
        return (kind, namespace) in listed or (kind, None) in listed

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The latest body (ours whole, others' metadata only), or None."""
        held = self._objects.get((kind, namespace, name))
        return None if held is None else dict(json.loads(held))

    def wrote(self, kind: str, body: Mapping[str, Any]) -> None:
        """Record the API server's answer to our write of an object."""
        meta = body.get("metadata") or {}
        ref = (kind, str(meta.get("namespace")), str(meta.get("name")))
        with self._lock:
            if self._store(ref, body):
                self._written[ref] = str(meta.get("resourceVersion"))

    def deleted(self, kind: str, namespace: str, name: str) -> None:
        """Record our delete of an object."""
        with self._lock:
            self._drop((kind, namespace, name))

    def is_echo(self, kind: str, body: Mapping[str, Any]) -> bool:
        """True when `body` is exactly what one of our writes produced: its event
        tells a reconcile nothing it does not know."""
        meta = body.get("metadata") or {}
        ref = (kind, str(meta.get("namespace")), str(meta.get("name")))
        version = meta.get("resourceVersion")
        return version is not None and self._written.get(ref) == str(version)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop what we remember of our writes to an object (it is gone)."""
        with self._lock:
            self._written.pop((kind, namespace, name), None)

    def __len__(self) -> int:
        return len(self._objects)

    # -- inside -----------------------------------------------------------------------------

    def _store(self, ref: Ref, body: Mapping[str, Any]) -> bool:
        """Keep `body` unless what is held is newer; True when kept. Lock held."""
        new, old = _version(body), self._versions.get(ref)
        if new is not None and old is not None and new < old:
            return False  # an event older than our write's answer, arriving late
        self._objects[ref] = json.dumps(self._trim(ref, body), separators=(",", ":")).encode()
        self._versions[ref] = new
        return True

    def _drop(self, ref: Ref) -> None:
        """Forget an object that is gone. Lock held."""
        self._objects.pop(ref, None)
        self._versions.pop(ref, None)
        self._written.pop(ref, None)

    def _trim(self, ref: Ref, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """Ours whole; another's object by the metadata that says who holds the name."""
        meta = body.get("metadata") or {}
        kind = ref[0]
        ours = (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == self.ours
        if kind in self.whole or (ours and kind not in self.metadata_only):
            if kind in self.field_owners or "managedFields" not in meta:
                return body
            trimmed = {k: v for k, v in meta.items() if k != "managedFields"}
            return {**body, "metadata": trimmed}
        return {"metadata": {k: meta[k] for k in _STUB_FIELDS if k in meta}}
