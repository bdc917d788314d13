"""Golden files: `agent-operator render` of every example, byte for byte.

Regenerate after an intended change with:
    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_builders_golden.py tests/unit/test_api_docs.py
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from agent_operator.render import render_manifest, to_yaml

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def rendered(example: Path) -> str:
    return to_yaml(render_manifest(yaml.safe_load(example.read_text())))


def test_there_are_three_examples() -> None:
    assert [p.name for p in EXAMPLES] == [
        "autoscaled-with-budget.yaml",
        "full.yaml",
        "minimal.yaml",
    ]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_render_matches_golden(example: Path) -> None:
    golden = GOLDEN / example.name
    actual = rendered(example)
    if UPDATE:
        golden.write_text(actual)
    assert golden.exists(), f"missing {golden}: run with UPDATE_GOLDEN=1"
    assert actual == golden.read_text(), f"{golden} differs: rerun with UPDATE_GOLDEN=1 and review"


def test_full_example_sets_every_spec_field() -> None:
    """full.yaml is the reference of every field: a new field must show up there."""
    from agent_operator.api import AgentDeploymentSpec

    spec = yaml.safe_load((REPO / "examples" / "full.yaml").read_text())["spec"]
    unset = [
        f.alias or name
        for name, f in AgentDeploymentSpec.model_fields.items()
        if (f.alias or name) not in spec and name != "replicas"  # replicas excludes autoscaling
    ]
    assert unset == []
