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

    def __init__(self, mode: str, extra_patterns: tuple[str, ...] = ()) -> None:
        self.mode = mode
        self._guard: Any = None
        if mode != "off":
            from agent_operator.guard import PromptGuard

            self._guard = PromptGuard(extra_patterns=extra_patterns)

    def for_mode(self, mode: str, extra_patterns: tuple[str, ...] = ()) -> Guard:
        """A guard in `mode` sharing this one's compiled detector (the other door's)."""
        if self._guard is None or mode == "off":
            return Guard(mode, extra_patterns)
        other = Guard("off")
        other.mode, other._guard = mode, self._guard
        return other

    @property
    def active(self) -> bool:
        return self._guard is not None

    def scan(self, payload: Any) -> GuardResult:
        """Scan the strings of a decoded JSON body."""
        verdict = self._guard.scan_json(payload)
        return GuardResult(bool(verdict.flagged), verdict.rule, float(verdict.score))
