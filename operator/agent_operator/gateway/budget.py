"""Budget: prices, limits per calendar period (UTC), the up-front check and charging.

Format of `budget.json` is fixed in docs/architecture.md. Prices are USD per
1M tokens. A model with no price is charged at `unknownModelPrice`, never free.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_operator.gateway.spend import SpendStore
from agent_operator.gateway.volumes import Signature, read_files

BUDGET_FILE = "budget.json"
PERIODS = ("hour", "day", "week", "month", "year")
# used only when budget.json has no unknownModelPrice: pricey on purpose
FALLBACK_UNKNOWN_PRICE = (15.0, 60.0)
_PRICE_CACHE_MAX = 1024


class BudgetFileError(ValueError):
    """budget.json is missing or malformed."""


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for the given token counts."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


@dataclass(frozen=True, slots=True)
class Limit:
    period: str
    max_usd: float


@dataclass(frozen=True)
class BudgetConfig:
    limits: tuple[Limit, ...] = ()
    alert_thresholds: tuple[float, ...] = ()
    on_exhausted: str = "reject"
    downgrade_model: str | None = None
    prices: Mapping[str, Price] = field(default_factory=dict)
    unknown_price: Price = Price(*FALLBACK_UNKNOWN_PRICE)
    # model name -> (price, priced name it matched or None); filled lazily, bounded
    _cache: dict[str, tuple[Price, str | None]] = field(default_factory=dict, repr=False)

    def price_for(self, model: str) -> tuple[Price, bool]:
        """Price of `model` and whether it was known.

        Exact name first, then without a `vendor/` prefix, then the longest
        priced name the model starts with (`gpt-4o-2024-08-06` -> `gpt-4o`).
        """
        price, name = self._match(model)
        return price, name is not None

    def label_for(self, model: str) -> str:
        """The metric label of `model`: the priced name it matched, else `other`.

        Bounded by the price table: any string an agent sends cannot grow a series.
        """
        return self._match(model)[1] or "other"

    def _match(self, model: str) -> tuple[Price, str | None]:
        hit = self._cache.get(model)
        if hit is not None:
            return hit
        result = self._lookup(model)
        if len(self._cache) < _PRICE_CACHE_MAX:
            self._cache[model] = result
        return result

    def _lookup(self, model: str) -> tuple[Price, str | None]:
        for name in (model, model.rsplit("/", 1)[-1]):
            if name in self.prices:
                return self.prices[name], name
        bare = model.rsplit("/", 1)[-1]
        best = max((p for p in self.prices if bare.startswith(p)), key=len, default=None)
        if best is not None:
            return self.prices[best], best
        return self.unknown_price, None


def _price(raw: Any, where: str) -> Price:
    if not isinstance(raw, Mapping):
        raise BudgetFileError(f"{where}: expected an object with input and output")
    try:
        return Price(float(raw.get("input", 0.0)), float(raw.get("output", 0.0)))
    except (TypeError, ValueError) as exc:
        raise BudgetFileError(f"{where}: prices must be numbers") from exc


def parse_budget(raw: Any) -> BudgetConfig:
    """Validate the decoded budget.json into a BudgetConfig.

    Every malformed shape raises BudgetFileError (a wrong type must not
    escape as TypeError and stop the reload loop).
    """
    try:
        return _parse_budget(raw)
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, BudgetFileError):
            raise
        raise BudgetFileError(f"budget.json: malformed ({exc})") from exc


def _parse_budget(raw: Any) -> BudgetConfig:
    if not isinstance(raw, Mapping):
        raise BudgetFileError("budget.json: expected a JSON object")
    limits = []
    for i, item in enumerate(raw.get("limits") or []):
        period = item.get("period") if isinstance(item, Mapping) else None
        if period not in PERIODS:
            raise BudgetFileError(f"budget.json: limits[{i}].period must be one of {PERIODS}")
        limits.append(Limit(period, float(item.get("maxUSD", 0.0))))
    on_exhausted = raw.get("onExhausted", "reject")
    if on_exhausted not in ("reject", "downgrade"):
        raise BudgetFileError("budget.json: onExhausted must be reject or downgrade")
    downgrade = raw.get("downgradeModel") or None
    if on_exhausted == "downgrade" and not downgrade:
        raise BudgetFileError("budget.json: downgrade needs downgradeModel")
    prices = {str(k): _price(v, f"prices.{k}") for k, v in (raw.get("prices") or {}).items()}
    unknown_raw = raw.get("unknownModelPrice")
    unknown = (
        _price(unknown_raw, "unknownModelPrice")
        if unknown_raw is not None
        else Price(*FALLBACK_UNKNOWN_PRICE)
    )
    thresholds = tuple(sorted(float(t) for t in raw.get("alertThresholds") or []))
    return BudgetConfig(tuple(limits), thresholds, on_exhausted, downgrade, prices, unknown)


def load_budget(directory: Path) -> tuple[BudgetConfig, Signature] | None:
    """Read and parse `<directory>/budget.json`; None when it changed mid-read."""
    snapshot = read_files(directory, (BUDGET_FILE,))
    if snapshot is None:
        return None
    files, sig = snapshot
    if BUDGET_FILE not in files:
        raise BudgetFileError(f"{BUDGET_FILE} is missing")
    try:
        raw = json.loads(files[BUDGET_FILE])
    except ValueError as exc:
        raise BudgetFileError(f"{BUDGET_FILE} is not valid JSON") from exc
    return parse_budget(raw), sig


def period_key(period: str, now: float) -> str:
    """Calendar period (UTC) containing `now` (epoch seconds), e.g. `month:2026-11`."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "hour":
        return f"hour:{moment:%Y-%m-%dT%H}"
    if period == "day":
        return f"day:{moment:%Y-%m-%d}"
    if period == "week":
        year, week, _ = moment.isocalendar()
        return f"week:{year}-W{week:02d}"
    if period == "month":
        return f"month:{moment:%Y-%m}"
    return f"year:{moment:%Y}"


@dataclass(frozen=True, slots=True)
class Exhausted:
    """A limit that is used up: what the 429 names."""

    limit: Limit
    period_key: str
    spent_usd: float


AlertHook = Callable[[Limit, str, float, float], None]  # limit, period key, threshold, spent


class Budget:
    """Checks limits before a call and charges after it, against a SpendStore."""

    def __init__(self, store: SpendStore, config: BudgetConfig, on_alert: AlertHook) -> None:
        self.store = store
        self.config = config  # swapped whole on reload
        self._on_alert = on_alert
        self._alerted: set[tuple[str, float]] = set()
        self._keys_cache: tuple[int, tuple[Limit, ...], list[str]] | None = None

    def keys(self, now: float) -> list[str]:
        """Period keys of the configured limits at `now`, in limit order.

        Cached per whole second: every calendar boundary falls on one, and
        this runs several times per request.
        """
        limits = self.config.limits
        second = int(now)
        cached = self._keys_cache
        if cached is not None and cached[0] == second and cached[1] is limits:
            return cached[2]
        keys = [period_key(limit.period, now) for limit in limits]
        self._keys_cache = (second, limits, keys)
        return keys

    def exhausted(self, now: float) -> Exhausted | None:
        """The first limit whose period spend has reached its maximum, if any."""
        limits = self.config.limits
        if not limits:
            return None
        for limit, key in zip(limits, self.keys(now), strict=True):
            spent = self.store.spent(key)
            if spent >= limit.max_usd:
                return Exhausted(limit, key, spent)
        return None

    def charge(self, usd: float, now: float) -> None:
        """Add `usd` to every limited period and raise each alert threshold once."""
        config = self.config
        if not config.limits or usd <= 0:
            return
        keys = self.keys(now)
        before = [self.store.spent(k) for k in keys]
        # two limits of one period (say 5 and 10 USD a day) share a key: charge it once
        self.store.add(dict.fromkeys(keys), usd)
        for limit, key, spent_before in zip(config.limits, keys, before, strict=True):
            spent_after = spent_before + usd
            for threshold in config.alert_thresholds:
                mark = threshold * limit.max_usd
                if spent_after >= mark and (key, threshold) not in self._alerted:
                    self._alerted.add((key, threshold))
                    self._on_alert(limit, key, threshold, spent_after)
