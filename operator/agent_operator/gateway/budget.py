"""Budget: prices, limits per calendar period (UTC), the up-front check and charging.

`budget.json` is `sidecar.BudgetFile`, the model the builder writes it with;
it is validated here and turned into the working `BudgetConfig`. Prices are
USD per 1M tokens. A model with no price is charged at `unknownModelPrice`,
never free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from agent_operator.gateway.spend import Hold, SpendStore
from agent_operator.gateway.volumes import Signature, read_files
from agent_operator.ledger import period_key
from agent_operator.sidecar import (
    BUDGET_FILE,
    DEFAULT_UNKNOWN_MODEL_PRICE,
    BudgetFile,
    BudgetFilePrice,
    BudgetPeriod,
    OnExhausted,
)

_PRICE_CACHE_MAX = 1024
_ERRORS_SHOWN = 3


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
    period: BudgetPeriod
    max_usd: float


@dataclass(frozen=True)
class BudgetConfig:
    """The budget the gateway enforces; swapped whole on reload. Default: no limits."""

    limits: tuple[Limit, ...] = ()
    alert_thresholds: tuple[float, ...] = ()
    on_exhausted: OnExhausted = "reject"
    downgrade_model: str | None = None
    prices: Mapping[str, Price] = field(default_factory=dict)
    unknown_price: Price = Price(*DEFAULT_UNKNOWN_MODEL_PRICE)
    # model name -> (price, priced name it matched or None); filled lazily, bounded
    _cache: dict[str, tuple[Price, str | None]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_file(cls, file: BudgetFile) -> BudgetConfig:
        """The working form of a validated budget.json; alert thresholds ascending."""
        return cls(
            limits=tuple(Limit(limit.period, limit.max_usd) for limit in file.limits),
            alert_thresholds=tuple(sorted(file.alert_thresholds)),
            on_exhausted=file.on_exhausted,
            downgrade_model=file.downgrade_model,
            prices={model: _price(price) for model, price in file.prices.items()},
            unknown_price=_price(file.unknown_model_price),
        )

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


def _price(price: BudgetFilePrice) -> Price:
    return Price(price.input, price.output)


def _describe(error: ValidationError) -> str:
    """`limits[0].maxUSD: Input should be a valid number; ...`: the first few errors."""
    problems = []
    for err in error.errors(include_url=False)[:_ERRORS_SHOWN]:
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {message}" if path else message)
    more = error.error_count() - _ERRORS_SHOWN
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def budget_from_json(text: str | bytes) -> BudgetConfig:
    """Validate the text of budget.json into a BudgetConfig.

    Every problem (not JSON, a wrong type, an unknown period) raises
    BudgetFileError naming the field: the reloader keeps the last good budget.
    """
    try:
        file = BudgetFile.model_validate_json(text)
    except ValidationError as exc:
        raise BudgetFileError(f"{BUDGET_FILE}: {_describe(exc)}") from exc
    return BudgetConfig.from_file(file)


def load_budget(directory: Path) -> tuple[BudgetConfig, Signature] | None:
    """Read and parse `<directory>/budget.json`; None when it changed mid-read."""
    snapshot = read_files(directory, (BUDGET_FILE,))
    if snapshot is None:
        return None
    files, sig = snapshot
    if BUDGET_FILE not in files:
        raise BudgetFileError(f"{BUDGET_FILE} is missing")
    return budget_from_json(files[BUDGET_FILE]), sig


@dataclass(frozen=True, slots=True)
class Exhausted:
    """A limit that is used up: what the 429 names."""

    limit: Limit
    period_key: str
    spent_usd: float


AlertHook = Callable[[Limit, str, float, float], None]  # limit, period key, threshold, spent


# Output tokens assumed for a reservation when the request sets no maximum.
DEFAULT_RESERVED_OUTPUT_TOKENS: Final = 4096
_MAX_TOKEN_FIELDS: Final = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def reservation_usd(config: BudgetConfig, model: str, body_bytes: int, payload: Any) -> float:
    """The most one call may cost, held by a reserving store until it is settled.

    Input: ~4 bytes of body per token (generous for JSON); output: the
    request's own maximum, else DEFAULT_RESERVED_OUTPUT_TOKENS.
    """
    price, _ = config.price_for(model)
    output = DEFAULT_RESERVED_OUTPUT_TOKENS
    if isinstance(payload, dict):
        for name in _MAX_TOKEN_FIELDS:
            value = payload.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**7:
                output = value
                break
    return price.cost(body_bytes // 4 + 1, output)


class Budget:
    """Admits billed calls against the limits and charges them, through a SpendStore.

    The config is the caller's (the request's snapshot), never kept here, so a
    reload between admit and settle cannot mix two budgets.
    """

    def __init__(self, store: SpendStore, on_alert: AlertHook) -> None:
        self.store = store
        self._on_alert = on_alert
        self._alerted: set[tuple[str, float]] = set()
        self._keys_cache: tuple[int, tuple[Limit, ...], list[str]] | None = None

    def keys(self, config: BudgetConfig, now: float) -> list[str]:
        """Period keys of the configured limits at `now`, in limit order.

        Cached per whole second: every calendar boundary falls on one, and
        this runs several times per request.
        """
        limits = config.limits
        second = int(now)
        cached = self._keys_cache
        if cached is not None and cached[0] == second and cached[1] is limits:
            return cached[2]
        keys = [period_key(limit.period, now) for limit in limits]
        self._keys_cache = (second, limits, keys)
        return keys

    async def admit(
        self, config: BudgetConfig, now: float, reserve_usd: float = 0.0
    ) -> Hold | Exhausted:
        """A Hold for the call, or the first limit already reached.

        Raises StoreUnavailable when the store cannot tell (the caller fails closed).
        """
        limits = config.limits
        if not limits:
            return UNLIMITED
        keys = self.keys(config, now)
        verdict = await self.store.admit(keys, [limit.max_usd for limit in limits], reserve_usd)
        if isinstance(verdict, Hold):
            return verdict
        return Exhausted(limits[verdict], keys[verdict], self.store.spent(keys[verdict]))

    def settle(self, config: BudgetConfig, hold: Hold, usd: float) -> None:
        """Charge `usd` to the hold's periods and raise each alert threshold once."""
        if not hold.keys:
            return
        usd = max(usd, 0.0)
        self.store.settle(hold, usd)
        if usd == 0 or len(config.limits) != len(hold.keys):
            return  # nothing spent, or the budget changed under the call: no alerts
        for limit, key in zip(config.limits, hold.keys, strict=True):
            spent_after = self.store.spent(key)
            spent_before = spent_after - usd
            for threshold in config.alert_thresholds:
                mark = threshold * limit.max_usd
                if spent_before < mark <= spent_after and (key, threshold) not in self._alerted:
                    self._alerted.add((key, threshold))
                    self._on_alert(limit, key, threshold, spent_after)


UNLIMITED: Final = Hold(())  # admitted with no limit to hold against
