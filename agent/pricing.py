"""Prices as dated data and the exact cost of a call.

Cost is computed in Decimal and stored as integer nano-USD (1e-9 USD). Every published price has at
most three decimals per million tokens, which is a whole number of nano-USD per token, so the
stored figure is exact; a price with more decimals is rounded half-up to the nano-dollar.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from store.usage import TokenUsage

DEFAULT_PRICES = Path(__file__).with_name("prices.toml")
NANO = Decimal(1_000_000_000)
_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


class UnknownPrice(LookupError):
    """A model with no price cannot be budgeted, so it cannot be used."""


@dataclass(frozen=True)
class Rates:
    """USD per million tokens."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal


@dataclass(frozen=True)
class Price:
    model: str
    effective: date
    base: Rates
    long_prompt_above: int | None = None
    long: Rates | None = None

    def rates_for(self, prompt_tokens: int) -> Rates:
        if self.long is not None and self.long_prompt_above is not None and prompt_tokens > self.long_prompt_above:
            return self.long
        return self.base


def _rates(entry: dict[str, Any], prefix: str = "") -> Rates:
    return Rates(**{f: Decimal(str(entry[prefix + f])) for f in _FIELDS})


class PriceTable:
    def __init__(self, prices: list[Price]) -> None:
        self._by_model: dict[str, list[Price]] = {}
        for p in sorted(prices, key=lambda p: p.effective):
            self._by_model.setdefault(p.model, []).append(p)

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        path = path or Path(os.environ.get("TOLLGATE_PRICES_FILE") or DEFAULT_PRICES)
        data = tomllib.loads(path.read_text())
        prices = []
        for e in data.get("price", []):
            long = _rates(e, "long_") if "long_input" in e else None
            prices.append(Price(model=e["model"], effective=date.fromisoformat(e["effective"]), base=_rates(e),
                                long_prompt_above=e.get("long_prompt_above"), long=long))
        return cls(prices)

    def models(self) -> list[str]:
        return sorted(self._by_model)

    def price(self, model: str, on: date) -> Price:
        candidates = [p for p in self._by_model.get(model, []) if p.effective <= on]
        if not candidates:
            raise UnknownPrice(f"no price for model {model!r} on {on}: add it to the price table "
                               f"(TOLLGATE_PRICES_FILE) before using it")
        return candidates[-1]

    def require(self, model: str, on: date) -> None:
        self.price(model, on)

    def cost_usd(self, model: str, usage: TokenUsage, on: date) -> Decimal:
        r = self.price(model, on).rates_for(usage.prompt_tokens)
        per_million = (usage.input_tokens * r.input + usage.output_tokens * r.output
                       + usage.cache_write_5m_tokens * r.cache_write_5m
                       + usage.cache_write_1h_tokens * r.cache_write_1h + usage.cache_read_tokens * r.cache_read)
        return per_million / Decimal(1_000_000)

    def worst_case_usd(self, model: str, *, prompt_tokens: int, max_output_tokens: int, on: date) -> Decimal:
        """Upper bound for a call: the whole prompt at the dearest prompt rate, full output."""
        p = self.price(model, on)
        r = p.rates_for(prompt_tokens)
        dearest = max(r.input, r.cache_write_5m, r.cache_write_1h)
        return (prompt_tokens * dearest + max_output_tokens * r.output) / Decimal(1_000_000)


def to_nano(usd: Decimal) -> int:
    return int((usd * NANO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_nano(nano: int) -> Decimal:
    return Decimal(nano) / NANO


def fmt_usd(nano: int) -> str:
    usd = from_nano(nano)
    return f"${usd:.4f}" if usd < 1 else f"${usd:.2f}"
