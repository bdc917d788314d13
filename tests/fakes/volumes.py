"""Kubernetes-style volume directories for running the gateway outside a pod.

The kubelet's atomic writer lays a Secret/ConfigMap volume out as::

    <dir>/..2026_11_25_00_00_00.123/current   # a timestamped data dir
    <dir>/..data -> ..2026_11_25_00_00_00.123  # symlink swapped atomically
    <dir>/current -> ..data/current            # what the container opens

An update writes a new timestamped dir, points a `..data_tmp` symlink at it,
renames `..data_tmp` onto `..data` (atomic), fixes the per-key symlinks,
then deletes the old dir. `KubeVolume` does exactly that.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

_counter = itertools.count()


class KubeVolume:
    """A directory kept the way the kubelet keeps a mounted Secret or ConfigMap."""

    def __init__(self, path: Path, files: Mapping[str, str]) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.update(files)

    def update(self, files: Mapping[str, str]) -> None:
        """Swap the whole content to `files`, atomically for readers."""
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
        data_dir = f"..{stamp}.{os.getpid()}{next(_counter):06d}"
        target = self.path / data_dir
        target.mkdir()
        for name, content in files.items():
            (target / name).write_text(content, encoding="utf-8")
        data_link = self.path / "..data"
        old = os.readlink(data_link) if data_link.is_symlink() else None
        tmp = self.path / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(data_dir, tmp)
        os.rename(tmp, data_link)  # the atomic step
        for name in files:
            link = self.path / name
            if not link.is_symlink():
                if link.exists():
                    link.unlink()
                os.symlink(f"..data/{name}", link)
        for stale in self.path.iterdir():
            if stale.is_symlink() and stale.name not in files and not stale.name.startswith(".."):
                stale.unlink()  # a key removed from the Secret disappears
        if old is not None:
            shutil.rmtree(self.path / old, ignore_errors=True)


def secret_files(
    current: str, previous: str | None = None, previous_expires_at: str | None = None
) -> dict[str, str]:
    """The layout of X-credentials / X-client-keys (docs/architecture.md)."""
    files = {"current": current}
    if previous is not None:
        files["previous"] = previous
    if previous_expires_at is not None:
        files["previous-expires-at"] = previous_expires_at
    return files
