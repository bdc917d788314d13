"""The pinned helm, for tests and scripts: `hack/build-helm` builds it from its
upstream Go module (cached in the user cache directory) and prints its path.

Standard library only, like localcluster.py. A missing Go toolchain or a
failed build raises HelmError: a test that needs helm fails, it never skips.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "agent-operator"
BUILD_SCRIPT = REPO / "hack" / "build-helm"


class HelmError(RuntimeError):
    """helm could not be built, or a helm command failed."""


@functools.cache
def binary() -> Path:
    """Path of the pinned helm; builds it on first use (minutes when the Go caches are cold)."""
    result = subprocess.run(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )  # the build's progress goes to our stderr
    if result.returncode != 0:
        raise HelmError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


@functools.cache
def _environment() -> dict[str, str]:
    """Our environment without HELM_* settings, and helm's own directories (repositories,
    plugins, registry logins) in one of ours beside the binary: no user's helm setup applies."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    home = cache / "agent-operator" / "helm-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    for name in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{name}_HOME"] = str(home / name.lower())
    return env


def run(
    *args: str,
    kubeconfig: Path | None = None,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 300.0,
) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm with `args` (against `kubeconfig` when given).

    check: a non-zero exit raises HelmError carrying helm's stderr.
    """
    argv = [str(binary()), *args]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_environment(),
        check=False,
    )
    if check and result.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def main() -> int:
    """Print the binary's path (building it if needed)."""
    print(binary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
