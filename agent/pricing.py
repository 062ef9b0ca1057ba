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
    values = {}
    for f in _FIELDS:
        raw = entry.get(prefix + f)
        # Strings only: a TOML float (0.1) has already lost exactness before Decimal sees it.
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            raise ValueError(f"{prefix + f} must be a string such as \"0.10\" (USD per million tokens)")
        try:
            value = Decimal(str(raw))
        except ArithmeticError:
            raise ValueError(f"{prefix + f} is not a number: {raw!r}") from None
        if not value.is_finite() or value < 0:
            raise ValueError(f"{prefix + f} must be a finite amount >= 0, not {raw!r}")
        values[f] = value
    return Rates(**values)


def _parse(e: dict[str, Any]) -> Price:
    has_long = any(k.startswith("long_") for k in e)
    above = e.get("long_prompt_above")
    if has_long and not (isinstance(above, int) and above > 0):
        raise ValueError("long-prompt rates need long_prompt_above (a positive integer)")
    return Price(model=str(e["model"]), effective=date.fromisoformat(str(e["effective"])), base=_rates(e),
                 long_prompt_above=above if has_long else None, long=_rates(e, "long_") if has_long else None)


class PriceTable:
    def __init__(self, prices: list[Price]) -> None:
        self._by_model: dict[str, list[Price]] = {}
        for p in sorted(prices, key=lambda p: p.effective):
            same_day = [q for q in self._by_model.get(p.model, []) if q.effective == p.effective]
            if same_day:
                raise ValueError(f"two prices for {p.model} effective {p.effective}")
            self._by_model.setdefault(p.model, []).append(p)

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """The table from `path`, else TOLLGATE_PRICES_FILE, else the bundled prices.toml.

        A malformed entry fails loudly (ValueError naming the file and entry): a mistyped price must
        stop start-up rather than mis-charge every call."""
        path = path or Path(os.environ.get("TOLLGATE_PRICES_FILE") or DEFAULT_PRICES)
        data = tomllib.loads(path.read_text())
        prices = []
        for i, e in enumerate(data.get("price", [])):
            try:
                prices.append(_parse(e))
            except KeyError as err:
                raise ValueError(f"{path}: price entry {i + 1} ({e.get('model', '?')}): missing {err}") from None
            except ValueError as err:
                raise ValueError(f"{path}: price entry {i + 1} ({e.get('model', '?')}): {err}") from None
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
    """For people: 4 decimals below a dollar, cents above, rounded half up (format() would round half even)."""
    usd = from_nano(nano)
    places = Decimal("0.0001") if usd < 1 else Decimal("0.01")
    return f"${usd.quantize(places, rounding=ROUND_HALF_UP)}"
