"""Desired versus live: decide whether a child needs a server-side apply.

Live objects are supersets of what we send (server defaults, other managers'
fields, status), so "in sync" means desired is a subset of live. What that
test cannot see is a field we *stopped* sending (autoscaling on drops
`replicas`): the apply that releases it is triggered by a hash of the shape
of what we send, kept in an annotation on the child.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from kubernetes.utils import parse_quantity

HASH_ANNOTATION: Final = "agents.dev/desired-hash"
# Holds spec.replicas between our release of it and the HPA's first scale.
HANDOFF_MANAGER: Final = "agent-operator-handoff"
# Quantity-valued keys: the server canonicalises them ("0.5" -> "500m").
_QUANTITY_PARENTS: Final = frozenset({"limits", "requests"})
_QUANTITY_KEYS: Final = frozenset({"averageValue", "value"})

Verdict = Literal["missing", "fields-changed", "drifted"]


def shape(value: Any) -> Any:
    """The set of field paths of `value`, leaves replaced by None.

    Values are left out on purpose: a changed value is caught by the subset
    test, and the hash must not reveal anything about Secret data.
    """
    if isinstance(value, Mapping):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return None


def desired_hash(desired: Mapping[str, Any]) -> str:
    """A short, stable hash of the shape of `desired` (its own hash annotation excluded)."""
    body = copy.deepcopy(dict(desired))
    metadata = body.get("metadata", {})
    annotations = metadata.get("annotations") or {}
    annotations.pop(HASH_ANNOTATION, None)
    if not annotations:
        metadata.pop("annotations", None)
    text = json.dumps(shape(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_hash(desired: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `desired` carrying its shape hash in an annotation."""
    body = copy.deepcopy(dict(desired))
    metadata = body.setdefault("metadata", {})
    metadata.setdefault("annotations", {})[HASH_ANNOTATION] = desired_hash(body)
    return body


def _same_quantity(a: Any, b: Any) -> bool:
    try:
        return bool(parse_quantity(a) == parse_quantity(b))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, InvalidOperation):
        return False


def _leaf_equal(path: tuple[str, ...], desired: Any, live: Any) -> bool:
    if desired == live and type(desired) is type(live):
        return True
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return Decimal(str(desired)) == Decimal(str(live))
    quantity = path[-1] in _QUANTITY_KEYS or (len(path) > 1 and path[-2] in _QUANTITY_PARENTS)
    return quantity and _same_quantity(desired, live)


def _omittable(value: Any) -> bool:
    return value is None or value == "" or value == []


def is_subset(desired: Any, live: Any, path: tuple[str, ...] = ()) -> bool:
    """True when every field of `desired` is in `live` with an equal value.

    Lists compare element by element in order; live may hold extra elements
    (another manager's), which the shape hash keeps from hiding removals of ours.
    A desired None, empty string or empty list matches an absent field: the API
    server omits those (an EnvVar's `value: ""`), and calling that drift would
    re-apply on every reconcile. An empty map does not: `emptyDir: {}` means
    something.
    """
    if desired is None:
        return live is None
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(
            is_subset(value, live.get(key), (*path, str(key)))
            for key, value in desired.items()
            if not (_omittable(value) and key not in live)
        )
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) < len(desired):
            return False
        return all(
            is_subset(d, lv, (*path, str(i)))
            for i, (d, lv) in enumerate(zip(desired, live, strict=False))
        )
    return _leaf_equal(path, desired, live)


def verdict(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> Verdict | None:
    """Why `desired` (as returned by with_hash) must be applied, or None when live is in sync."""
    if live is None:
        return "missing"
    want = desired.get("metadata", {}).get("annotations", {}).get(HASH_ANNOTATION)
    have = (live.get("metadata", {}).get("annotations") or {}).get(HASH_ANNOTATION)
    if want != have:
        return "fields-changed"
    if not is_subset(desired, live):
        return "drifted"
    return None


def owns_replicas(live: Mapping[str, Any], manager: str) -> bool:
    """True when `manager`'s Apply entry in live managedFields holds spec.replicas."""
    for entry in live.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            return "f:replicas" in (entry.get("fieldsV1") or {}).get("f:spec", {})
    return False


def replicas_handoff(
    desired: Mapping[str, Any], live: Mapping[str, Any] | None, manager: str
) -> dict[str, Any] | None:
    """The apply (as HANDOFF_MANAGER) that keeps the live replica count when we release it.

    An apply that drops a field nobody else owns removes it, and the server
    defaults replicas to 1: switching autoscaling on would scale a busy
    Deployment down until the HPA reacts. A second manager co-owning the
    field at its live value keeps it; the HPA's scale updates take it over.
    """
    if desired.get("kind") != "Deployment" or live is None:
        return None
    if "replicas" in desired.get("spec", {}) or not owns_replicas(live, manager):
        return None
    meta = desired["metadata"]
    return {
        "apiVersion": desired["apiVersion"],
        "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": live.get("spec", {}).get("replicas", 1)},
    }
