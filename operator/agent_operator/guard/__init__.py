"""Prompt-injection detection: a pure function over text plus a rules file.

``PromptGuard(extra_patterns, threshold).scan(text)`` returns a ``Verdict``
(rules plus a small learned scorer; ``learned=False`` for the rules alone);
the gateway decides what to do with it (block, flag or nothing).
"""

from agent_operator.guard.model import LinearModel, load_model
from agent_operator.guard.rules import Rule, RuleSet, load_rules
from agent_operator.guard.scanner import DEFAULT_THRESHOLD, Finding, PromptGuard, Verdict

__all__ = [
    "DEFAULT_THRESHOLD",
    "Finding",
    "LinearModel",
    "PromptGuard",
    "Rule",
    "RuleSet",
    "Verdict",
    "load_model",
    "load_rules",
]
