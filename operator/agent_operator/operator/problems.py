"""Expected trouble as values: a reason for machines, a message for people."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem(Exception):
    """Trouble that is not a bug: it becomes Ready=False and a retry with backoff.

    `retry` is False when only a change of the AgentDeployment can fix it (an
    invalid spec): a new event reconciles again, so no timer is needed.
    """

    reason: str
    message: str
    retry: bool = True

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
