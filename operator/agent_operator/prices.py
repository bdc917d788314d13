"""Built-in LLM prices in USD per 1M tokens, for models in common use.

They are defaults: `spec.budget.prices` overrides any entry, and a model
found in neither table is charged `spec.budget.unknownModelPrice`. Keys are
model names as the provider reports them in the response's `model` field,
without date suffixes.
"""

from __future__ import annotations

from typing import Final

# model -> (input, output) USD per 1M tokens, list prices of the providers.
BUILTIN_PRICES: Final[dict[str, tuple[float, float]]] = {
    # OpenAI
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "o3": (2.0, 8.0),
    "o3-mini": (1.1, 4.4),
    "o4-mini": (1.1, 4.4),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    # Anthropic
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
}
