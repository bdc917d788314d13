"""A small learned scorer next to the rules: logistic regression over words.

The rules catch known shapes; unseen framings of an injection (and their
translations) still share vocabulary with known ones ("from now on", "your
instructions", "reply only with", ...). A linear model over the word
unigrams and bigrams of the normalised ``words`` view (so leetspeak,
homoglyphs, zero-width and spaced letters are already undone) scores that
vocabulary. Features are binary (present or not), so the score of a text is
``sigmoid(bias + sum of the weights of its distinct unigrams and bigrams)``.

Weights come from ``model.json`` (package data), written by
``bench/guard_data/train.py`` from the dev split only. The scorer is pure
Python: two dict look-ups per token, no numpy at run time.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from itertools import pairwise, repeat
from typing import Any

MODEL_FILE = "model.json"
FORMAT = 1
RULE_ID = "model.linear"
# Stands for every token that no feature names (words never have controls).
_UNKNOWN = "\x81"
FAMILY = "learned"


def feature_names(tokens: Sequence[str]) -> set[str]:
    """The features of a token list, as training names them.

    Unigrams are the tokens; bigrams are two adjacent tokens joined by one
    space (tokens never contain spaces, so the names cannot collide).
    """
    names = set(tokens)
    names.update(f"{a} {b}" for a, b in pairwise(tokens))
    return names


@dataclass(frozen=True, slots=True)
class LinearModel:
    """Weights of a logistic regression over binary word n-gram features."""

    bias: float
    unigrams: dict[str, float]
    # Keyed by token pairs: pairwise() builds them in C, joining strings
    # would cost a Python-level loop.
    bigrams: dict[tuple[str, str], float]
    # Below this probability the model overrules weak rule matches.
    veto: float = 0.0
    # Every token some feature names, mapped to itself (max_probability).
    vocabulary: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vocabulary = dict(zip(self.unigrams, self.unigrams, strict=True))
        for first, second in self.bigrams:
            vocabulary[first] = first
            vocabulary[second] = second
        object.__setattr__(self, "vocabulary", vocabulary)

    @classmethod
    def from_weights(cls, bias: float, weights: dict[str, float], veto: float = 0.0) -> LinearModel:
        """Build from feature names as ``feature_names`` spells them."""
        unigrams: dict[str, float] = {}
        bigrams: dict[tuple[str, str], float] = {}
        for name, weight in weights.items():
            if weight == 0.0:
                continue
            first, _, second = name.partition(" ")
            if second:
                bigrams[(first, second)] = weight
            else:
                unigrams[first] = weight
        return cls(bias=bias, unigrams=unigrams, bigrams=bigrams, veto=veto)

    def logit(self, tokens: Sequence[str], present: set[str] | None = None) -> float:
        """``bias`` plus the weights of the distinct features of ``tokens``.

        ``present`` is ``set(tokens)`` when the caller has it already.
        """
        distinct = set(tokens) if present is None else present
        # filter(None, ...) drops the misses (None) without a Python loop.
        total = self.bias + math.fsum(filter(None, map(self.unigrams.get, distinct)))
        if len(tokens) > 1:
            total += math.fsum(filter(None, map(self.bigrams.get, set(pairwise(tokens)))))
        return total

    def probability(self, tokens: Sequence[str], present: set[str] | None = None) -> float:
        """The model's injection probability for ``tokens`` (a words view)."""
        return _sigmoid(self.logit(tokens, present))

    def max_probability(self, tokens: list[str], separator: str) -> float | None:
        """The highest ``probability`` over several texts (None if all are
        empty), given all their tokens in one list, texts separated by the
        token ``separator``.

        For the many short strings of a JSON body. A token that no feature
        names cannot change a sum, so each is masked to one placeholder
        first: texts of the same masked shape ("item 17 ok", "item 18 ok")
        are then scored once each.
        """
        vocabulary = self.vocabulary
        if separator in vocabulary or _UNKNOWN in vocabulary:
            raise ValueError("separator or placeholder is a feature name")
        known = {**vocabulary, separator: separator}
        masked = " ".join(map(known.get, tokens, repeat(_UNKNOWN)))
        shapes = {shape for shape in map(str.strip, masked.split(separator)) if shape}
        return max(map(self.probability, map(str.split, shapes)), default=None)

    def weight_of(self, names: Iterable[str]) -> float:
        """Sum of the weights of feature ``names`` (the slow, reference path)."""
        total = self.bias
        for name in names:
            first, _, second = name.partition(" ")
            if second:
                total += self.bigrams.get((first, second), 0.0)
            else:
                total += self.unigrams.get(first, 0.0)
        return total


def _sigmoid(x: float) -> float:
    # Split by sign so exp() never overflows.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def parse_model(document: dict[str, Any]) -> LinearModel:
    """Validate a decoded ``model.json`` document."""
    if document.get("format") != FORMAT:
        raise ValueError(f"model: unsupported format {document.get('format')!r}")
    weights = document.get("weights")
    if not isinstance(weights, dict):
        raise ValueError("model: expected a 'weights' mapping")
    return LinearModel.from_weights(
        float(document["bias"]),
        {str(k): float(v) for k, v in weights.items()},
        float(document.get("veto", 0.0)),
    )


@functools.cache
def load_model() -> LinearModel:
    """The shipped model, read and parsed once per process."""
    text = resources.files(__package__).joinpath(MODEL_FILE).read_text("utf-8")
    return parse_model(json.loads(text))
