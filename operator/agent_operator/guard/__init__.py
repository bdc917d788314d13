"""Prompt-injection detection: a pure function over text plus a rules file.

``PromptGuard(extra_patterns, threshold).scan(text)`` returns a ``Verdict``;
the gateway decides what to do with it (block, flag or nothing).
"""

from agent_operator.guard.rules import Rule, RuleSet, load_rules
from agent_operator.guard.scanner import DEFAULT_THRESHOLD, Finding, PromptGuard, Verdict

__all__ = [
    "DEFAULT_THRESHOLD",
    "Finding",
    "PromptGuard",
    "Rule",
    "RuleSet",
    "Verdict",
    "load_rules",
]
