"""Reading mounted Secret/ConfigMap volumes and noticing when Kubernetes swaps them.

Kubernetes' atomic writer puts the files in a timestamped directory and
renames a `..data` symlink onto it; each visible file is a symlink through
`..data`. Opening a file resolves the whole chain at once, so a read sees one
version or the other, never a mix. For plain files (outside a pod) a
signature taken before and after the read catches a concurrent writer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

Signature = tuple[tuple[str, int, int, int], ...]


def _data_dir(directory: Path) -> Path:
    """Where a version's files really are: the `..data` target when the kubelet
    laid the volume out, else the directory itself.

    Reading through `..data` once, rather than through each file's own link,
    matters: the kubelet swaps `..data` first and adds the links of new files
    (a `previous` that a rotation adds) only afterwards, so per-file links
    can show a new `current` without its `previous` for a moment.
    """
    try:
        return directory / os.readlink(directory / "..data")
    except OSError:
        return directory


def signature(directory: Path, names: Iterable[str]) -> Signature:
    """Identity of the current contents: (name, inode, mtime ns, size) per present file."""
    base = _data_dir(directory)
    items: list[tuple[str, int, int, int]] = []
    for name in names:
        try:
            st = os.stat(base / name)  # follows symlinks: sees the swapped target
        except OSError:
            continue
        items.append((name, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(items)


def read_files(directory: Path, names: Iterable[str]) -> tuple[dict[str, str], Signature] | None:
    """Read the named files (absent ones are left out) as one consistent snapshot.

    Returns None when the files changed while being read; the caller tries
    again on its next poll.
    """
    names = tuple(names)
    base = _data_dir(directory)
    before = signature(directory, names)
    data: dict[str, str] = {}
    for name in names:
        try:
            data[name] = (base / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
    if _data_dir(directory) != base or signature(directory, names) != before:
        return None
    return data, before
