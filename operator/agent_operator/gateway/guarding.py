"""Adapter to the prompt guard (agent_operator.guard): built once, off costs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# the guard scans ~15 MB/s: a larger body is scanned in a thread, so one big
# request does not stall both doors' event loop for seconds (64 MiB ~ 4 s)
SCAN_INLINE_MAX = 256 * 1024


@dataclass(frozen=True, slots=True)
class GuardResult:
    flagged: bool
    rule: str | None
    score: float


class Guard:
    """Mode `block`, `flag` or `off`; the detector is imported only when used."""

    def __init__(self, mode: str, extra_patterns: tuple[str, ...] = (), *, detector: Any = None):
        """`detector` shares another door's compiled PromptGuard (then
        `extra_patterns` are that one's)."""
        self.mode = mode
        self._guard: Any = None
        if mode != "off":
            if detector is None:
                from agent_operator.guard import PromptGuard

                detector = PromptGuard(extra_patterns=extra_patterns)
            self._guard = detector

    def for_mode(self, mode: str, extra_patterns: tuple[str, ...] = ()) -> Guard:
        """A guard in `mode` sharing this one's detector when it has one."""
        return Guard(mode, extra_patterns, detector=self._guard)

    @property
    def active(self) -> bool:
        return self._guard is not None

    def scan(self, payload: Any) -> GuardResult:
        """Scan the strings of a decoded JSON body (or a list of parts of one)."""
        verdict = self._guard.scan_json(payload)
        return GuardResult(bool(verdict.flagged), verdict.rule, float(verdict.score))
