"""Budgets enforced before each model call by reservation, settled to the exact cost afterwards.

A check raises `BudgetExceeded` naming the limit (as pydantic-ai's UsageLimits does), so the loop
can stop cleanly and tell the user what was spent, what remains and when it resets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from agent.config import Settings
from agent.pricing import PriceTable, fmt_usd, to_nano
from agent.trace import NULL_TRACE, TraceLog
from store import margins as margin_store
from store import usage as usage_store
from store.db import Database
from store.usage import LimitReached, SpendLimit, TokenUsage

_MONEY_SCOPES = ("user_day", "user_month", "global_day", "thread_usd")
log = logging.getLogger("tollgate.budget")
# After an overrun a user's prompt estimates are scaled by actual/estimate times this headroom, at most
# MAX_ESTIMATE_FACTOR: a bounded margin, so one freak call cannot make every later reservation absurd.
OVERRUN_HEADROOM = Decimal("1.10")
MAX_ESTIMATE_FACTOR_MILLI = 4_000


class BudgetExceeded(Exception):
    def __init__(self, limit: SpendLimit, used: int, needed: int, in_flight: int = 0) -> None:
        self.limit = limit
        self.used = used  # settled spend plus what calls still running hold
        self.needed = needed
        self.in_flight = in_flight  # the part of `used` held by calls still running
        super().__init__(self.user_message())

    @property
    def limit_name(self) -> str:
        return self.limit.name

    def _amount(self, n: int) -> str:
        if self.limit.scope in _MONEY_SCOPES:
            return fmt_usd(n)
        if self.limit.scope == "thread_tokens":
            return f"{n:,} tokens"
        return f"{n:,} model call{'' if n == 1 else 's'}"

    def resets(self) -> str:
        now = datetime.now(UTC)
        if self.limit.scope in ("user_day", "global_day"):
            nxt = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            return f"resets at {nxt:%Y-%m-%d %H:%M} UTC"
        if self.limit.scope == "user_month":
            first = (now.replace(day=1) + timedelta(days=32)).replace(day=1)
            return f"resets on {first:%Y-%m-%d} UTC"
        if self.limit.scope == "turn_calls":
            return "resets with your next message"
        return "does not reset: start a new thread"

    def user_message(self) -> str:
        left = max(self.limit.cap - self.used, 0)
        # Calls still running will usually settle below what they hold, so the user can retry sooner.
        held = (f" ({self._amount(self.in_flight)} of it held by calls still running: try again when they finish)"
                if self.in_flight else "")
        never = (" One call needs more than the whole limit, so an operator must raise it."
                 if self.needed > self.limit.cap else "")
        return (f"Stopped: the {self.limit.name} would be exceeded. Used {self._amount(self.used)} of "
                f"{self._amount(self.limit.cap)}{held}; {self._amount(left)} left, the next call needs up to "
                f"{self._amount(self.needed)}. It {self.resets()}.{never}")


@dataclass(frozen=True)
class Reservation:
    key: str
    model: str
    nanousd: int
    on: date  # the UTC day the call was reserved: its price and its spend day, even across midnight
    user: str = ""
    prompt_tokens: int = 0  # the prompt estimate the reservation was sized for, margin included
    factor_milli: int = 1000  # the user's estimate margin in force when it was made


@dataclass(frozen=True)
class BudgetLeft:
    day_spent: int  # nano-USD
    day_cap: int
    month_spent: int
    month_cap: int

    def line(self) -> str:
        day = fmt_usd(max(self.day_cap - self.day_spent, 0))
        month = fmt_usd(max(self.month_cap - self.month_spent, 0))
        return (f"{day} left today (of {fmt_usd(self.day_cap)}); {month} left this month "
                f"(of {fmt_usd(self.month_cap)})")


class Budget:
    def __init__(self, db: Database, prices: PriceTable, settings: Settings, trace: TraceLog = NULL_TRACE) -> None:
        self.db = db
        self.prices = prices
        self.settings = settings
        self.trace = trace
        self._factor_milli: dict[str, int] = {}  # user: estimate margin, read once per process then kept

    async def estimate_factor_milli(self, user: str) -> int:
        factor = self._factor_milli.get(user)
        if factor is None:
            factor = self._factor_milli[user] = (await margin_store.margin_for(self.db, user=user)).factor_milli
        return factor

    def limits_for(self, *, user: str, thread_id: str | None) -> list[SpendLimit]:
        """The default caps; a user's own budget replaces theirs inside the reservation (store.usage)."""
        s = self.settings
        limits = [
            SpendLimit(f"daily budget for {user}", "user_day", to_nano(s.user_daily_usd)),
            SpendLimit(f"monthly budget for {user}", "user_month", to_nano(s.user_monthly_usd)),
            SpendLimit("deployment's daily budget", "global_day", to_nano(s.global_daily_usd)),
        ]
        if thread_id is not None:
            limits += [
                SpendLimit("thread's cost limit", "thread_usd", to_nano(s.max_usd_per_thread)),
                SpendLimit("thread's token limit", "thread_tokens", s.max_tokens_per_thread),
                SpendLimit("thread's model-call limit", "thread_calls", s.max_calls_per_thread),
            ]
        return limits

    async def reserve(self, *, user: str, thread_id: str | None, turn_id: str, model: str, purpose: str,
                      prompt_tokens: int, max_tokens: int, calls_this_turn_cap: int | None = None) -> Reservation:
        now = time.time()
        today = datetime.fromtimestamp(now, UTC).date()
        factor = await self.estimate_factor_milli(user)
        prompt_tokens = -(-prompt_tokens * factor // 1000)  # ceil: a margin never rounds down
        worst = to_nano(self.prices.worst_case_usd(model, prompt_tokens=prompt_tokens,
                                                   max_output_tokens=max_tokens, on=today))
        limits = self.limits_for(user=user, thread_id=thread_id)
        if calls_this_turn_cap is not None:
            limits.append(SpendLimit("limit of model calls per message", "turn_calls", calls_this_turn_cap))
        reserving = asyncio.ensure_future(usage_store.reserve(
            self.db, user=user, thread_id=thread_id, turn_id=turn_id, model=model, purpose=purpose,
            amount_nanousd=worst, tokens=prompt_tokens + max_tokens, limits=limits, now=now))
        try:
            key = await asyncio.shield(reserving)
        except asyncio.CancelledError:
            # The writer thread commits the reservation whether or not we wait (a stop pressed meanwhile):
            # free it, or it stays held until a restart charges it at its worst case.
            await asyncio.shield(self._free_abandoned(reserving))
            raise
        except LimitReached as e:
            needed = {"thread_tokens": prompt_tokens + max_tokens, "thread_calls": 1,
                      "turn_calls": 1}.get(e.limit.scope, worst)
            raise BudgetExceeded(e.limit, e.used, needed, e.in_flight) from None
        return Reservation(key=key, model=model, nanousd=worst, on=today, user=user, prompt_tokens=prompt_tokens,
                           factor_milli=factor)

    async def _free_abandoned(self, reserving: asyncio.Future[str]) -> None:
        try:
            key = await reserving
        except Exception:  # nothing was reserved (a limit was reached, the write failed)
            return
        await usage_store.settle(self.db, key=key, usage=TokenUsage(), cost_nanousd=0, status="released",
                                 error="cancelled before the call started")

    def cost_nano(self, model: str, usage: TokenUsage, on: date | None = None) -> int:
        return to_nano(self.prices.cost_usd(model, usage, on or datetime.now(UTC).date()))

    async def settle(self, r: Reservation, usage: TokenUsage, *, stop_reason: str | None,
                     ttft_ms: float | None, latency_ms: float) -> int:
        return await self._close(r, usage, status="settled", stop_reason=stop_reason, ttft_ms=ttft_ms,
                                 latency_ms=latency_ms)

    async def release(self, r: Reservation, usage: TokenUsage, *, error: str, latency_ms: float) -> int:
        """A failed call: charge whatever usage the API reported before it failed, free the rest."""
        return await self._close(r, usage, status="released", error=error[:500], latency_ms=latency_ms)

    async def _close(self, r: Reservation, usage: TokenUsage, *, status: str, stop_reason: str | None = None,
                     ttft_ms: float | None = None, error: str | None = None, latency_ms: float) -> int:
        cost = self.cost_nano(r.model, usage, r.on)
        if cost > r.nanousd:
            await self._overrun(r, usage, cost)
        closed = await usage_store.settle(self.db, key=r.key, usage=usage, cost_nanousd=cost, status=status,
                                          stop_reason=stop_reason, ttft_ms=ttft_ms, latency_ms=latency_ms,
                                          error=error)
        if not closed:
            log.warning("reservation %s was already closed (by a restart?); its worst case stays charged", r.key)
        return cost

    async def _overrun(self, r: Reservation, usage: TokenUsage, cost: int) -> None:
        """The call is still settled at its real cost (the limits see it); the overrun is counted for the
        operator and the user's next estimates get a margin from the observed actual/estimate ratio."""
        log.warning("call %s cost %s, more than its reservation of %s: the prompt estimate was too low",
                    r.key, fmt_usd(cost), fmt_usd(r.nanousd))
        ratio = Decimal(max(usage.prompt_tokens, 1)) / Decimal(max(r.prompt_tokens, 1))
        wanted = int(Decimal(r.factor_milli) * ratio * OVERRUN_HEADROOM) + 1
        factor = min(max(wanted, r.factor_milli), MAX_ESTIMATE_FACTOR_MILLI)
        margin = None
        if r.user:
            try:
                margin = await margin_store.record_overrun(self.db, user=r.user, excess_nanousd=cost - r.nanousd,
                                                           factor_milli=factor)
                self._factor_milli[r.user] = margin.factor_milli
            except Exception:  # counting must never stop the call from being settled
                log.exception("could not record the overrun of call %s", r.key)
        self.trace.emit("reservation_overrun", user=r.user, call=r.key, model=r.model,
                        reserved_nanousd=r.nanousd, cost_nanousd=cost, estimated_prompt_tokens=r.prompt_tokens,
                        prompt_tokens=usage.prompt_tokens, factor_milli=factor,
                        overruns=None if margin is None else margin.overruns)

    async def left(self, *, user: str) -> BudgetLeft:
        """The user's spend and caps today and this month (open reservations count as spent)."""
        usage = await usage_store.usage_now(self.db, user=user)
        day_cap = usage.own_caps.get("user_day", to_nano(self.settings.user_daily_usd))
        month_cap = usage.own_caps.get("user_month", to_nano(self.settings.user_monthly_usd))
        return BudgetLeft(day_spent=usage.scopes["user_day"][0], day_cap=day_cap,
                          month_spent=usage.scopes["user_month"][0], month_cap=month_cap)

    async def status(self, *, user: str, thread_id: str) -> tuple[int, int, int]:
        """(spent today, daily limit, thread cost) in nano-USD, in one read."""
        usage = await usage_store.usage_now(self.db, user=user, thread_id=thread_id)
        limit = usage.own_caps.get("user_day", to_nano(self.settings.user_daily_usd))
        return usage.scopes["user_day"][0], limit, usage.scopes["thread_usd"][0]


def usd(nano: int) -> str:
    return fmt_usd(nano)


__all__ = ["Budget", "BudgetExceeded", "BudgetLeft", "Decimal", "Reservation", "usd"]
