"""Properties of the scanner on arbitrary and adversarial input."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_operator.guard import PromptGuard
from agent_operator.guard.normalise import normalise

GUARD = PromptGuard()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_scan_is_total_and_pure(text: str) -> None:
    first = GUARD.scan(text)
    assert 0.0 <= first.score <= 1.0
    assert first.flagged == (first.score >= GUARD.threshold)
    assert GUARD.scan(text) == first  # no hidden state between calls
    assert len({f.rule for f in first.findings}) == len(first.findings)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=300))
def test_words_view_is_lower_case_and_single_spaced(text: str) -> None:
    views = normalise(text)
    assert views.words == views.words.lower()
    assert "  " not in views.words
    assert views.words == views.words.strip()


def test_adversarial_inputs_scan_in_linear_time() -> None:
    # Shapes that make backtracking regexes explode, 100 KB each.
    inputs = [
        "ignore " * 15000,
        "ignore all the the the " * 4500,
        "a " * 50000,
        "<|" * 50000,
        "A" * 100000,
        "QUJD" * 25000,
        "%41" * 33000,
        "\u200b".join("x" * 50000),
        "if you are asked " * 6000,
        "\n".join(["User: hi", "Assistant: hello"] * 4000),
        "a" * 50000 + " \u0430",  # one long word, then a Cyrillic letter
        "Привет " * 12000,
    ]
    for text in inputs:
        start = time.perf_counter()
        GUARD.scan(text)
        elapsed = time.perf_counter() - start
        assert elapsed < 2.0, (text[:20], elapsed)
