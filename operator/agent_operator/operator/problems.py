"""Expected trouble as values: a reason for machines, a message for people."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# Longest server message quoted in status and Events; the rest is noise.
MAX_QUOTED: Final = 400
# 403: quota, RBAC, admission policy, a terminating namespace; 500: the server failed
# (a full Service IP range, a webhook's error). The cluster may change; the user must
# see why meanwhile, not only the operator's log.
_RETRIED_STATUSES: Final = frozenset({403, 500})
# Invalid or too large: only a change of the AgentDeployment can fix these.
_INVALID_STATUSES: Final = frozenset({400, 413, 422})
# etcd's limit on one object is reported as a server error, not a 4xx.
_TOO_LARGE: Final = "request is too large"


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


def child_conflict(kind: str, name: str) -> Problem:
    """A child's name is taken by an object this AgentDeployment does not control."""
    return Problem(
        "ChildConflict",
        f"{kind} {name} exists and is not controlled by this AgentDeployment; it is left "
        f"untouched: delete or rename it and the operator creates its own",
    )


def child_rejected(kind: str, name: str, status: int, message: str) -> Problem | None:
    """The API server refused to apply a child (None: not a refusal, a failure to retry).

    `message` is the server's Status message; it is quoted trimmed to one line.
    """
    too_large = _TOO_LARGE in message
    if status not in _RETRIED_STATUSES | _INVALID_STATUSES and not too_large:
        return None
    quoted = " ".join(message.split())
    if len(quoted) > MAX_QUOTED:
        quoted = quoted[: MAX_QUOTED - 3] + "..."
    return Problem(
        "ChildRejected",
        f"the API server refused {kind} {name} ({status}): {quoted}",
        retry=status in _RETRIED_STATUSES and not too_large,
    )


def combine(problems: Sequence[Problem]) -> Problem | None:
    """One Problem for a reconcile: the first one's reason, every message.

    Retried when any of them is, so a problem that fixes itself (a conflict
    deleted) is noticed even next to one that waits for a spec change.
    """
    if not problems:
        return None
    first = problems[0]
    messages = [
        p.message if p.reason == first.reason else f"{p.reason}: {p.message}" for p in problems
    ]
    return Problem(
        first.reason, "; ".join(dict.fromkeys(messages)), retry=any(p.retry for p in problems)
    )
