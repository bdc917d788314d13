"""The gateway's own identity can do the ledger's work and nothing else.

A token of `<agent>-gateway` bound to one of the agent's pods (as the kubelet
projects it into the gateway container) is used against the real API server:
it cannot read Secrets, cannot touch another AgentDeployment's records or
another pod's, cannot lower or delete spend; it can write its own record.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from tests.e2e.conftest import OperatorProcess
from tests.e2e.ledger.harness import kube_json, live_pods, pod_token
from tests.e2e.test_operator import wait_for

from agent_operator.gateway.kubeapi import KubeAPI, KubeError
from agent_operator.ledger import SpendRecordSpec, gateway_identity, period_key, record_body
from localcluster import Cluster

pytestmark = pytest.mark.e2e


def agent_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "agents.dev/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.example.com/a:1",
            "replicas": 1,
            "credentials": {"issuer": {"type": "generated"}},
            "budget": {"limits": [{"period": "day", "maxUSD": 5}]},
        },
    }


def spec(agent: str, pod_uid: str, spent: float) -> SpendRecordSpec:
    key = period_key("day", time.time())
    return SpendRecordSpec(
        agent=agent, period="day", period_key=key, pod_name="p", pod_uid=pod_uid, spent_usd=spent
    )


async def raw(account: Path, server: str, method: str, path: str) -> int:
    """Status of a request made with the gateway's token (for verbs KubeAPI lacks)."""
    context = ssl.create_default_context(cafile=str(account / "ca.crt"))
    headers = {"Authorization": "Bearer " + (account / "token").read_text().strip()}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server + path, headers=headers, ssl=context) as r,
    ):
        return r.status


async def test_gateway_token_reaches_its_own_records_only(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, tmp_path: Path
) -> None:
    for name in ("alpha", "beta"):
        cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(agent_body(name)))
    pods = await asyncio.to_thread(
        wait_for, lambda: live_pods(cluster, namespace, "alpha"), 60, "alpha's pod"
    )
    await asyncio.to_thread(
        wait_for,
        lambda: (
            cluster.kubectl(
                "-n", namespace, "get", "rolebinding", gateway_identity("alpha"), check=False
            ).returncode
            == 0
        ),
        30,
        "alpha's gateway identity",
    )
    pod, uid = pods[0]
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(pod_token(cluster, namespace, "alpha", pod, uid))
    shutil.copy(cluster.pki / "ca.crt", account / "ca.crt")
    api = KubeAPI(cluster.server(), account, namespace)
    try:
        # no Secret, not even the agent's own keys
        assert (
            await raw(account, api.server, "GET", f"/api/v1/namespaces/{namespace}/secrets") == 403
        )
        secret = f"/api/v1/namespaces/{namespace}/secrets/alpha-credentials"
        assert await raw(account, api.server, "GET", secret) == 403
        # its own AgentDeployment only (to learn the uid that owns its records)
        assert await api.agent_uid("alpha")
        with pytest.raises(KubeError) as refused:
            await api.agent_uid("beta")
        assert refused.value.status == 403

        # another AgentDeployment's record: refused by the admission policy
        with pytest.raises(KubeError) as refused:
            await api.create_record(record_body(spec("beta", uid, 1.0), namespace, ""))
        assert refused.value.status in (403, 422)
        # another pod's record of its own agent: refused
        with pytest.raises(KubeError) as refused:
            await api.create_record(
                record_body(spec("alpha", "0000-other-pod", 1.0), namespace, "")
            )
        assert refused.value.status in (403, 422)

        # its own record: written, grown, never lowered, never deleted
        created = await api.create_record(record_body(spec("alpha", uid, 1.0), namespace, ""))
        version = created["metadata"]["resourceVersion"]
        grown = await api.replace_record(
            record_body(spec("alpha", uid, 2.0), namespace, "", version)
        )
        assert grown is not None and grown["spec"]["spentUSD"] == 2.0
        with pytest.raises(KubeError) as refused:
            await api.replace_record(
                record_body(
                    spec("alpha", uid, 0.5), namespace, "", grown["metadata"]["resourceVersion"]
                )
            )
        assert refused.value.status in (403, 422)
        name = created["metadata"]["name"]
        path = f"{api.records_path}/{name}"
        assert await raw(account, api.server, "DELETE", path) == 403
        items, _ = await api.list_records("agents.dev/agent=alpha")
        assert [i["spec"]["spentUSD"] for i in items] == [2.0]
    finally:
        await api.close()

    # the agent container holds no credential for the API
    pod_spec = kube_json(cluster, namespace, "deployment", "alpha")["spec"]["template"]["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    agent = next(c for c in pod_spec["containers"] if c["name"] == "agent")
    token_volumes = {v["name"] for v in pod_spec["volumes"] if "projected" in v or "secret" in v}
    assert not token_volumes & {m["name"] for m in agent.get("volumeMounts", [])}
