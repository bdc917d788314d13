"""Keys on the real control plane: issue, rotate, revoke; crash-safe; nothing leaks.

The operator runs as a subprocess with `--time-scale 60` (a minute lasts a
second): `every: 8m, gracePeriod: 3m` rotate every 8 s with 3 s of grace.
The `openai` issuer talks to tests/fakes/openai_admin.py, a stateful fake of
the OpenAI Admin API that remembers every key it ever minted.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from tests.e2e.test_operator import agd, apply, get, manifest, source_secret, wait_for
from tests.fakes.openai_admin import FakeOpenAIAdmin, Fault

from agent_operator.api import ADMIN_URLS_ANNOTATION, ISSUER_SOURCE_LABEL
from localcluster import Cluster

if TYPE_CHECKING:
    from tests.e2e.conftest import OperatorProcess

pytestmark = pytest.mark.e2e

SCALE = ("--time-scale", "60")
FAST = {"every": "8m", "gracePeriod": "3m"}  # 8 s and 3 s at scale 60
SLOW = {"every": "720h", "gracePeriod": "3m"}  # no scheduled rotation during a test
ADMIN_KEY = "sk-admin-e2e-0123456789"


@pytest.fixture
def admin() -> Iterator[FakeOpenAIAdmin]:
    with FakeOpenAIAdmin(admin_key=ADMIN_KEY, projects=("proj_1",)).in_thread() as fake:
        yield fake


def admin_secret(cluster: Cluster, namespace: str, allowed_url: str | None) -> None:
    """The admin key, opted in as an issuer source, allowed to go to `allowed_url`."""
    notes = {ADMIN_URLS_ANNOTATION: allowed_url} if allowed_url else {}
    metadata = {
        "name": "openai-admin",
        "labels": {ISSUER_SOURCE_LABEL: "true"},
        "annotations": notes,
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "stringData": {"apiKey": ADMIN_KEY},
    }
    cluster.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(secret))


def openai_manifest(fake: FakeOpenAIAdmin, rotation: dict[str, str]) -> dict[str, Any]:
    return manifest(
        credentials={
            "issuer": {
                "type": "openai",
                "projectID": "proj_1",
                "adminBaseURL": fake.url + "/v1",
                "secretRef": {"name": "openai-admin", "key": "apiKey"},
            },
            "rotation": rotation,
        },
        clientAuth={"enabled": False},
    )


def openai_agent(
    cluster: Cluster, namespace: str, fake: FakeOpenAIAdmin, rotation: dict[str, str]
) -> None:
    """The admin key Secret (opted in) and AgentDeployment `bot` with the openai issuer."""
    admin_secret(cluster, namespace, fake.url + "/v1")
    apply(cluster, namespace, openai_manifest(fake, rotation))


def secret(cluster: Cluster, namespace: str, name: str = "bot-credentials") -> dict[str, Any]:
    body = get(cluster, namespace, "secret", name)
    assert body is not None
    return body


def data(body: dict[str, Any], key: str) -> str | None:
    raw = (body.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw is not None else None


def notes(body: dict[str, Any]) -> dict[str, str]:
    return dict(body["metadata"].get("annotations") or {})


def key_id(cluster: Cluster, namespace: str, name: str = "bot-credentials") -> str | None:
    body = get(cluster, namespace, "secret", name)
    return notes(body).get("agents.dev/key-id") if body else None


def settled(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    """The credentials Secret once no mint is in flight."""
    body = get(cluster, namespace, "secret", "bot-credentials")
    if body is None or "agents.dev/rotation-state" in notes(body) or data(body, "current") is None:
        return None
    return body


def held_keys(body: dict[str, Any]) -> set[str]:
    return {v for v in (data(body, "current"), data(body, "previous")) if v}


def assert_nothing_leaked(
    cluster: Cluster, namespace: str, op: OperatorProcess, fake: FakeOpenAIAdmin
) -> None:
    """No minted key (nor the admin key) in the operator's log, Events, status or metrics."""
    events = cluster.kubectl("-n", namespace, "get", "events", "-o", "json").stdout
    status = json.dumps(agd(cluster, namespace).get("status") or {})
    places = {"log": op.logs(), "events": events, "status": status, "metrics": op.metrics()}
    keys = [*fake.minted_keys, ADMIN_KEY]
    assert len(keys) > 1
    for where, text in places.items():
        for key in keys:
            assert key not in text, f"a key leaked into the operator's {where}"
            assert key[-12:] not in text, f"part of a key leaked into the operator's {where}"


def rotate(cluster: Cluster, namespace: str, value: str) -> None:
    cluster.kubectl(
        "-n",
        namespace,
        "annotate",
        "--overwrite",
        "agentdeployment",
        "bot",
        f"agents.dev/rotate={value}",
    )


def warnings(cluster: Cluster, namespace: str) -> list[str]:
    events = get(cluster, namespace, "events", "--field-selector", "type=Warning")
    assert events is not None
    return [e["reason"] for e in events["items"]]


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


# --- scheduled rotation -----------------------------------------------------------------


def test_generated_keys_rotate_on_schedule_and_the_previous_is_dropped_after_its_grace(
    cluster: Cluster, namespace: str, make_operator: Callable[..., OperatorProcess]
) -> None:
    op = make_operator("operator", *SCALE)
    op.start()
    apply(
        cluster,
        namespace,
        manifest(
            credentials={"issuer": {"type": "generated"}, "rotation": FAST},
            clientAuth={"enabled": True, "rotation": FAST},
        ),
    )
    ids: dict[str, list[str]] = {"bot-credentials": [], "bot-client-keys": []}
    previous_seen_after_expiry = []
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and min(len(v) for v in ids.values()) < 4:
        for name, seen in ids.items():
            body = get(cluster, namespace, "secret", name)
            if body is None:
                continue
            kid = notes(body).get("agents.dev/key-id")
            if kid and (not seen or seen[-1] != kid):
                seen.append(kid)
            expires = data(body, "previous-expires-at")
            if expires and data(body, "previous"):
                late = time.time() - time.mktime(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ"))
                late += time.timezone  # strptime's struct is UTC, mktime assumes local
                if late > 3.0:  # well past the grace: the previous key must be gone
                    previous_seen_after_expiry.append((name, late))
        time.sleep(0.2)
    # the first key and three scheduled rotations of each Secret
    assert all(len(seen) >= 4 for seen in ids.values()), ids
    assert all(len(set(seen)) == len(seen) for seen in ids.values())
    assert not previous_seen_after_expiry
    body = agd(cluster, namespace)
    creds = body["status"]["credentials"]
    assert creds["keyID"] == key_id(cluster, namespace) or creds["keyID"] in ids["bot-credentials"]
    assert {"rotatedAt", "nextRotationAt"} <= set(creds)
    assert body["status"]["clientKeys"]["keyID"] in ids["bot-client-keys"]
    assert condition(body, "CredentialsReady")["status"] == "True"
    # each key's due time is exported (the AgentKeyOverdue alert's source), later than
    # the rotation status showed (metrics are set before status is written)
    rotated = datetime.fromisoformat(creds["rotatedAt"].replace("Z", "+00:00")).timestamp()
    due = {
        line.split('secret="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in op.metrics().splitlines()
        if line.startswith("agent_operator_credential_next_rotation_timestamp_seconds{")
    }
    assert set(due) == {"credentials", "client-keys"}, due
    assert due["credentials"] > rotated, (due, creds)


def test_openai_keys_rotate_and_each_previous_key_is_revoked_at_the_issuer(
    cluster: Cluster,
    namespace: str,
    make_operator: Callable[..., OperatorProcess],
    admin: FakeOpenAIAdmin,
) -> None:
    op = make_operator("operator", *SCALE)
    op.start()
    openai_agent(cluster, namespace, admin, FAST)
    # the finalizer exists before the first key does
    wait_for(
        lambda: (
            "agents.dev/revoke-keys"
            in (agd(cluster, namespace)["metadata"].get("finalizers") or [])
        ),
        30,
        "the finalizer",
    )
    wait_for(lambda: len(admin.minted_keys) >= 4, 60, "three scheduled rotations")

    # at every moment the issuer holds exactly what the Secret holds: current (+ previous)
    def consistent() -> bool:
        body = settled(cluster, namespace)
        return body is not None and admin.live_keys() == held_keys(body)

    wait_for(consistent, 10, "the issuer to hold exactly the Secret's keys")
    assert len(admin.live_keys()) <= 2
    # no key was minted twice for one rotation: key ids all differ and all but the
    # live ones were revoked
    revoked = set(admin.minted_keys) - admin.live_keys()
    assert len(revoked) >= len(admin.minted_keys) - 2
    assert_nothing_leaked(cluster, namespace, op, admin)


# --- the rotate annotation ------------------------------------------------------------


def test_the_rotate_annotation_rotates_exactly_once(
    cluster: Cluster,
    namespace: str,
    make_operator: Callable[..., OperatorProcess],
    admin: FakeOpenAIAdmin,
) -> None:
    op = make_operator("operator", *SCALE)
    op.start()
    openai_agent(cluster, namespace, admin, SLOW)
    first = wait_for(lambda: settled(cluster, namespace), 30, "the first key")
    first_id = notes(first)["agents.dev/key-id"]
    rotate(cluster, namespace, "1")
    wait_for(lambda: key_id(cluster, namespace) != first_id, 20, "the rotation")
    second = wait_for(lambda: settled(cluster, namespace), 10, "a settled Secret")
    assert notes(second)["agents.dev/previous-key-id"] == first_id
    time.sleep(6)  # several reconciles (and the 3 s grace) later: still one rotation
    assert key_id(cluster, namespace) == notes(second)["agents.dev/key-id"]
    assert len(admin.minted_keys) == 2
    wait_for(lambda: admin.live_keys() == {data(second, "current")}, 10, "the old key revoked")
    events = get(cluster, namespace, "events", "--field-selector", "reason=KeyRotated")
    assert events is not None and len(events["items"]) == 1
    assert_nothing_leaked(cluster, namespace, op, admin)


def test_a_long_rotate_value_rotates_once_and_is_recorded_as_a_digest(
    cluster: Cluster, namespace: str, make_operator: Callable[..., OperatorProcess]
) -> None:
    make_operator("operator", *SCALE).start()
    generated = {"issuer": {"type": "generated"}, "rotation": SLOW}
    apply(cluster, namespace, manifest(credentials=generated))
    first = wait_for(lambda: settled(cluster, namespace), 30, "the first key")
    rotate(cluster, namespace, "r" * 100_000)  # anyone who may annotate writes any value

    def rotated() -> dict[str, Any] | None:
        body = settled(cluster, namespace)
        if body is None or notes(body)["agents.dev/key-id"] == notes(first)["agents.dev/key-id"]:
            return None
        return body

    body = wait_for(rotated, 30, "the rotation")
    recorded = notes(body)["agents.dev/rotate-handled"]
    assert recorded.startswith("sha256:") and len(recorded) < 80
    time.sleep(4)  # reconciles later: still one rotation
    assert key_id(cluster, namespace) == notes(body)["agents.dev/key-id"]


def test_the_admin_key_goes_only_where_its_secret_allows(
    cluster: Cluster,
    namespace: str,
    make_operator: Callable[..., OperatorProcess],
    admin: FakeOpenAIAdmin,
) -> None:
    """An AgentDeployment author points adminBaseURL at a server of theirs: the operator
    must not send an opted-in admin key there unless the Secret's owner listed it."""
    make_operator("operator", *SCALE).start()
    admin_secret(cluster, namespace, None)  # opted in, for the default URL only
    apply(cluster, namespace, openai_manifest(admin, SLOW))  # adminBaseURL: elsewhere

    def refused() -> dict[str, Any] | None:
        body = agd(cluster, namespace)
        return body if condition(body, "Ready").get("reason") == "IssuerURLNotAllowed" else None

    body = wait_for(refused, 30, "Ready=False IssuerURLNotAllowed")
    assert ADMIN_URLS_ANNOTATION in condition(body, "Ready")["message"]
    assert admin.requests == [] and admin.minted_keys == []
    assert get(cluster, namespace, "secret", "bot-credentials") is None
    cluster.kubectl(
        "-n",
        namespace,
        "annotate",
        "secret",
        "openai-admin",
        f"{ADMIN_URLS_ANNOTATION}={admin.url}/v1",
    )
    wait_for(lambda: settled(cluster, namespace), 60, "the key once the owner allows the URL")
    assert len(admin.minted_keys) == 1


# --- crash at each step ----------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        "before-pending-write",
        "after-pending-write",
        "after-mint",
        "after-write",
        "before-revoke",
        "after-revoke",
    ],
)
def test_a_crash_at_any_step_of_a_rotation_leaves_no_orphan_and_no_double_mint(
    cluster: Cluster,
    namespace: str,
    make_operator: Callable[..., OperatorProcess],
    admin: FakeOpenAIAdmin,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    calm = make_operator("calm", *SCALE)
    calm.start()
    openai_agent(cluster, namespace, admin, SLOW)
    first = wait_for(lambda: settled(cluster, namespace), 30, "the first key")
    calm.stop()
    monkeypatch.setenv("AGENT_OPERATOR_CRASH_AT", step)
    doomed = make_operator("doomed", *SCALE)
    doomed.start()
    monkeypatch.delenv("AGENT_OPERATOR_CRASH_AT")
    rotate(cluster, namespace, step)
    # kill -9 at the step: during the rotation, or at the revocation 3 s later
    assert doomed.proc is not None
    doomed.proc.wait(timeout=30)
    assert doomed.proc.returncode == -9, doomed.logs()[-3000:]
    make_operator("again", *SCALE).start()

    def done() -> dict[str, Any] | None:
        body = settled(cluster, namespace)
        first_id = notes(first)["agents.dev/key-id"]
        if body is None or notes(body).get("agents.dev/key-id") == first_id:
            return None
        return body if not data(body, "previous") else None  # the grace ended too

    final = wait_for(done, 40, "the rotation to complete and its grace to end")
    # exactly the current key lives at the issuer: the old one and any lost mint revoked
    wait_for(lambda: admin.live_keys() == {data(final, "current")}, 10, "no orphan")
    # at most one mint was lost (crashed before its answer was recorded)
    lost = 1 if step == "after-mint" else 0
    assert len(admin.minted_keys) == 2 + lost
    assert len(admin.service_accounts("proj_1")) == 1


# --- issuer faults ---------------------------------------------------------------------


def test_issuer_faults_back_off_keep_the_working_key_and_leave_no_orphan(
    cluster: Cluster,
    namespace: str,
    make_operator: Callable[..., OperatorProcess],
    admin: FakeOpenAIAdmin,
) -> None:
    op = make_operator("operator", *SCALE, "--backoff-max-seconds", "2")
    op.start()
    openai_agent(cluster, namespace, admin, SLOW)
    first = wait_for(lambda: settled(cluster, namespace), 30, "the first key")
    # every attempt of the next rotations fails: 429s, 5xx, a reset, and a create
    # that succeeds at the issuer but whose answer never comes (the client times out)
    admin.enqueue(
        *[Fault.status(503, op="create") for _ in range(3)],
        *[Fault.status(429, retry_after="0", op="create") for _ in range(3)],
        Fault.reset(op="create"),
        Fault.after_create_timeout(15),
    )
    rotate(cluster, namespace, "faulty")
    wait_for(
        lambda: condition(agd(cluster, namespace), "CredentialsReady").get("status") == "False",
        30,
        "CredentialsReady=False",
    )
    body = agd(cluster, namespace)
    assert condition(body, "CredentialsReady")["reason"] == "IssuerUnavailable"
    assert condition(body, "Degraded").get("status") != "True"  # the working key still works
    assert data(secret(cluster, namespace), "current") == data(first, "current")
    assert "IssuerUnavailable" in warnings(cluster, namespace)
    # once the faults are used up the rotation completes and nothing is left behind
    final = wait_for(
        lambda: (
            (b := settled(cluster, namespace)) is not None
            and notes(b).get("agents.dev/key-id") != notes(first)["agents.dev/key-id"]
            and b
        ),
        90,
        "the rotation after the faults",
    )
    wait_for(
        lambda: condition(agd(cluster, namespace), "CredentialsReady").get("status") == "True",
        20,
        "CredentialsReady=True",
    )
    wait_for(
        lambda: admin.live_keys() == held_keys(settled(cluster, namespace) or final),
        20,
        "the issuer to hold only the Secret's keys",
    )
    wait_for(lambda: admin.live_keys() == {data(final, "current")}, 20, "the grace to end")
    assert_nothing_leaked(cluster, namespace, op, admin)


# --- deletion --------------------------------------------------------------------------


def test_deletion_revokes_minted_keys_and_waits_while_the_issuer_is_down(
    cluster: Cluster,
    namespace: str,
    make_operator: Callable[..., OperatorProcess],
    admin: FakeOpenAIAdmin,
) -> None:
    make_operator("operator", *SCALE, "--backoff-max-seconds", "2").start()
    openai_agent(cluster, namespace, admin, SLOW)
    wait_for(lambda: settled(cluster, namespace), 30, "the first key")
    assert len(admin.live_keys()) == 1
    admin.enqueue(*[Fault.status(500, op="list") for _ in range(40)])
    cluster.kubectl("-n", namespace, "delete", "agentdeployment", "bot", "--wait=false")
    wait_for(
        lambda: (
            condition(agd(cluster, namespace), "CredentialsReady").get("reason")
            == "RevocationPending"
        ),
        30,
        "RevocationPending",
    )
    assert "RevocationPending" in warnings(cluster, namespace)
    assert len(admin.live_keys()) == 1  # nothing revoked yet, the object still there
    admin.clear()  # the issuer is back
    wait_for(lambda: get(cluster, namespace, "agentdeployment", "bot") is None, 30, "deletion")
    assert admin.live_keys() == set()


def test_generated_and_static_keys_need_no_finalizer(
    cluster: Cluster,
    namespace: str,
    make_operator: Callable[..., OperatorProcess],
) -> None:
    make_operator("operator", *SCALE).start()
    apply(cluster, namespace, manifest(credentials={"issuer": {"type": "generated"}}))
    wait_for(lambda: settled(cluster, namespace), 30, "the first key")
    assert not agd(cluster, namespace)["metadata"].get("finalizers")


# --- a static source is watched ---------------------------------------------------------


def test_a_changed_static_source_rotates_within_seconds(
    cluster: Cluster,
    namespace: str,
    make_operator: Callable[..., OperatorProcess],
) -> None:
    # resync far away: only the watch on the source can be this fast
    op = make_operator("operator", *SCALE, "--resync-seconds", "600")
    op.start()
    source_secret(cluster, namespace, "sk-source-1")
    apply(
        cluster,
        namespace,
        manifest(
            credentials={
                "issuer": {"type": "static", "secretRef": {"name": "upstream", "key": "apiKey"}},
                "rotation": SLOW,
            }
        ),
    )
    wait_for(
        lambda: (b := settled(cluster, namespace)) and data(b, "current") == "sk-source-1",
        30,
        "the source's key",
    )
    time.sleep(2)  # the first reconciles are over: what follows is the source's change
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "secret",
        "upstream",
        "--type",
        "merge",
        "-p",
        json.dumps({"stringData": {"apiKey": "sk-source-2"}}),
    )
    started = time.monotonic()
    body = wait_for(
        lambda: (b := settled(cluster, namespace)) and data(b, "current") == "sk-source-2" and b,
        15,
        "the new source key",
    )
    assert time.monotonic() - started < 15
    assert data(body, "previous") == "sk-source-1"  # valid for the grace period
    assert os.environ.get("AGENT_OPERATOR_CRASH_AT") is None
    # a key that follows its source has no schedule: never overdue
    due = [
        line
        for line in op.metrics().splitlines()
        if line.startswith("agent_operator_credential_next_rotation_timestamp_seconds{")
    ]
    assert due and not [line for line in due if 'secret="credentials"' in line], due
