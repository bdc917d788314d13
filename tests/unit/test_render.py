"""`agent-operator render`: valid manifests print children, invalid ones exit 2 with the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent_operator import render
from agent_operator.api import AgentDeployment

REPO = Path(__file__).resolve().parents[2]
MINIMAL = REPO / "examples" / "minimal.yaml"
INVALID = """\
apiVersion: agents.dev/v1alpha1
kind: AgentDeployment
metadata: {name: broken}
spec:
  image: registry.example.com/agent:1
  autoscaling: {minReplicas: 4, maxReplicas: 2}
  credentials: {issuer: {type: openai, secretRef: {name: admin}}}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = render.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_yaml_stream(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-f", str(MINIMAL))
    assert (code, err) == (0, "")
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == [
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ]
    assert {d["metadata"]["namespace"] for d in docs} == {"default"}


def test_json_list_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "-f",
        str(MINIMAL),
        "-o",
        "json",
        "-n",
        "team-b",
        "--gateway-image",
        "registry.example.com/agent-operator:2.0.0",
    )
    assert code == 0
    docs = json.loads(out)
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    assert deploy["metadata"]["namespace"] == "team-b"
    gateway = deploy["spec"]["template"]["spec"]["containers"][1]
    assert gateway["image"] == "registry.example.com/agent-operator:2.0.0"


def test_uid_is_a_stable_placeholder(capsys: pytest.CaptureFixture[str]) -> None:
    _, first, _ = run(capsys, "-f", str(MINIMAL))
    _, second, _ = run(capsys, "-f", str(MINIMAL))
    assert first == second
    uid = next(yaml.safe_load_all(first))["metadata"]["ownerReferences"][0]["uid"]
    assert uid == render.placeholder_uid("default", "hello-agent")
    assert uid != render.placeholder_uid("other", "hello-agent")


def test_uid_of_a_live_object_is_kept() -> None:
    body = yaml.safe_load(MINIMAL.read_text())
    body["metadata"]["uid"] = "d3c1a8e2-0000-4000-8000-000000000001"
    children = render.render_manifest(body)
    assert {c["metadata"]["ownerReferences"][0]["uid"] for c in children} == {
        "d3c1a8e2-0000-4000-8000-000000000001"
    }


def test_invalid_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(INVALID)
    code, out, err = run(capsys, "-f", str(path))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{path}: spec.autoscaling.maxReplicas: must be >= minReplicas",
        f"{path}: spec.credentials.issuer.projectID: is required when type is openai",
    ]


def test_several_documents_name_the_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(MINIMAL.read_text() + "---\n" + INVALID)
    code, out, err = run(capsys, "-f", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"{path}[1]: spec.autoscaling.maxReplicas")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("spec: [unclosed", "not valid YAML"),
        ("", "no AgentDeployment found"),
        ("- just\n- a list\n", "<root>: must be a mapping"),
        ("kind: AgentDeployment\n", "metadata.name: required value"),
        ("metadata: {name: x}\n", "spec: required value"),
    ],
)
def test_unusable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(content)
    code, _, err = run(capsys, "-f", str(path))
    assert code == 2
    assert message in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "-f", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml: No such file or directory" in err


def test_console_script_from_stdin_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent_operator.cli", "render", "-f", "-"],
        input=INVALID,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "<stdin>: spec.autoscaling.maxReplicas: must be >= minReplicas" in result.stderr
    assert "Traceback" not in result.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "agent_operator.cli", "render", "-f", "-"],
        input=MINIMAL.read_text(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0
    children = list(yaml.safe_load_all(ok.stdout))
    assert AgentDeployment.from_body(yaml.safe_load(MINIMAL.read_text())).name == "hello-agent"
    assert len(children) == 7
