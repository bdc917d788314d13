"""Adapter to the prompt guard (agent_operator.guard): built once, off costs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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

    @property
    def active(self) -> bool:
        return self._guard is not None

    def scan(self, payload: Any) -> GuardResult:
        """Scan the strings of a decoded JSON body."""
        verdict = self._guard.scan_json(payload)
        return GuardResult(bool(verdict.flagged), verdict.rule, float(verdict.score))
