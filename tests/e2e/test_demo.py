"""`make demo`, as a new user runs it: on the session's control plane, tour included.

The tour (hack/tour.py) writes one JSON line per step; each step's outcome is
asserted here from that output, and `kubectl get agd` must show every example
Ready with its spend and key age filled in.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import Cluster

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
STEPS = ["chat", "no-key", "injection", "spend", "rotation", "budget", "metrics"]


@pytest.fixture
def demo(cluster: Cluster, agent_crd: None) -> Iterator[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "DEMO_CLUSTER_DIR": str(cluster.root)}
    (cluster.root / "tour.jsonl").unlink(missing_ok=True)
    try:
        done = subprocess.run(
            ["make", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200
        )
        yield done
    finally:
        subprocess.run(["hack/demo", "down"], cwd=REPO, env=env, capture_output=True, timeout=120)


def test_make_demo_shows_every_promise(
    cluster: Cluster, demo: subprocess.CompletedProcess[str]
) -> None:
    output = demo.stdout + demo.stderr
    print(output[-6000:])
    assert demo.returncode == 0, output[-4000:]
    lines = (cluster.root / "tour.jsonl").read_text().splitlines()
    steps: dict[str, dict[str, Any]] = {s["step"]: s for s in map(json.loads, lines)}
    assert list(steps) == STEPS
    assert all(s["ok"] for s in steps.values()), [s for s in steps.values() if not s["ok"]]
    assert steps["chat"]["status"] == 200 and "reply" in steps["chat"]["got"]
    assert steps["no-key"]["status"] == 401
    assert steps["injection"]["status"] == 400 and "override." in steps["injection"]["got"]
    assert steps["spend"]["spent_usd"] > 0
    assert steps["rotation"]["failed"] == 0 and steps["rotation"]["requests"] >= 10
    assert steps["budget"]["status"] == 429 and steps["budget"]["phase"] == "BudgetExhausted"
    assert "agent_gateway_requests_total" in steps["metrics"]["got"]
    # Key material never reaches the output: commands carry $CLIENT_KEY.
    keys = json.loads(
        cluster.kubectl(
            "-n", "demo", "get", "secret", "support-bot-client-keys", "-o", "json"
        ).stdout
    )["data"]
    shown = [s["command"] for s in steps.values() if "Authorization" in s["command"]]
    assert len(shown) == 2 and all("Bearer $CLIENT_KEY" in c for c in shown)
    assert not any(base64.b64decode(value).decode() in output for value in keys.values())

    agds = json.loads(cluster.kubectl("-n", "demo", "get", "agd", "-o", "json").stdout)["items"]
    assert {a["metadata"]["name"] for a in agds} >= {"support-bot", "research-agent", "hello-agent"}
    for agd in agds:
        status = agd["status"]
        name = agd["metadata"]["name"]
        assert status["phase"] == "Ready", (name, status.get("conditions"))
        assert status["credentials"]["rotatedAt"], name
        if "budget" in agd["spec"]:
            assert "spentUSD" in status["budget"] and status["budget"]["limitUSD"] > 0, name
