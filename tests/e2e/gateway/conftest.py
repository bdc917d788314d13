"""Makes `tests.*` importable however pytest is started (these tests import the
fakes and the harness by package name)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
