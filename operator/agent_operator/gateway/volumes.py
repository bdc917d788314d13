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


def signature(directory: Path, names: Iterable[str]) -> Signature:
    """Identity of the current contents: (name, inode, mtime ns, size) per present file."""
    items: list[tuple[str, int, int, int]] = []
    for name in names:
        try:
            st = os.stat(directory / name)  # follows symlinks: sees the swapped target
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
    before = signature(directory, names)
    data: dict[str, str] = {}
    for name in names:
        try:
            data[name] = (directory / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
    if signature(directory, names) != before:
        return None
    return data, before
