"""Attacks quoted in a discussion of attacks: a security advisory, a blog post
on prompt injection, a code review of a guardrail.

Such text contains the literal shapes the rules look for ("ignore previous
instructions") but reports them rather than says them. A text is read as
such a discussion when, outside its quoted spans, it uses the vocabulary of
one (attacker, prompt injection, for example, ...); it is then judged a
second time with the quoted spans blanked out. An attacker can borrow the
framing, but the instruction then reaches the model inside quotes,
attributed to someone else, which is what makes it weak; docs/guard.md
counts what this costs on the attack sets.
"""

from __future__ import annotations

import re

# Short quoted spans on one line: "...", “...”, «...», `...`, and '...' not
# inside a word (so "don't ... it's" is no quote).
_QUOTED = re.compile(
    r'"[^"\n]{3,160}"|“[^”\n]{3,160}”|«[^»\n]{3,160}»|`[^`\n]{3,160}`'
    r"|(?<!\w)'[^'\n]{3,160}'(?!\w)"
)
# The same inside a JSON document written as text (a tool's answer): \"...\".
# Blanked first, before the document's own quotes can pair up around them.
_ESCAPED_QUOTED = re.compile(r'\\"[^"\\\n]{3,160}\\"')
_DISCUSSION = re.compile(
    r"\b(?:prompt[- ]injections?|injection attacks?|attackers?|jailbreak(?:s|ing)?|owasp"
    r"|red[- ]team\w*|guardrails?|payloads?|(?:phrases?|sentences?|strings?) like|regex"
    r"|detect\w*|classifiers?|such as|for example|e\.g\.|examples?|adversar\w*|malicious"
    r"|security|researchers?)\b",
    re.IGNORECASE,
)
_BLANK = " … "
_QUOTE_MARKS = ('"', "“", "«", "`", "'")
# Longer flagged texts stay flagged: blanking costs ~30 ns a character,
# and a page-sized advisory is far below this.
MAX_CHARS = 256 * 1024


def unquoted(text: str) -> str | None:
    """``text`` with its quoted spans blanked out when it discusses attacks;
    None when it quotes nothing, does not read as such a discussion, or is
    longer than MAX_CHARS."""
    if len(text) > MAX_CHARS or not any(mark in text for mark in _QUOTE_MARKS):
        return None
    outside = _QUOTED.sub(_BLANK, _ESCAPED_QUOTED.sub(_BLANK, text))
    if outside == text:
        return None
    if not _DISCUSSION.search(outside):
        return None
    return outside
