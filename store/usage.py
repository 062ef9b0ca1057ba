"""Model-call usage, budget reservations and per-user limits.

A reservation is a model_calls row in status "reserved" holding the worst-case cost of the call
about to be made. It is checked against every applicable limit and inserted in ONE write
transaction (BEGIN IMMEDIATE on the single writer), so concurrent sessions cannot both fit into
the same remaining budget. Spend = settled costs + outstanding reservations.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.db import Database
from store.models import BUDGETS, MODEL_CALLS, USERS

_calls = MODEL_CALLS
_budgets = BUDGETS
_users = USERS
SCOPES = ("user_day", "user_month", "global_day", "thread_usd", "thread_tokens", "thread_calls", "turn_calls")
_COUNT_SCOPES = ("thread_calls", "turn_calls")


@dataclass(frozen=True)
class SpendLimit:
    name: str  # what the user is told, e.g. "daily budget for alice"
    scope: str  # one of SCOPES
    cap: int  # nano-USD, tokens or calls depending on the scope


class LimitReached(Exception):
    def __init__(self, limit: SpendLimit, used: int, in_flight: int = 0) -> None:
        super().__init__(f"{limit.name}: {used} used of {limit.cap}")
        self.limit = limit
        self.used = used
        self.in_flight = in_flight  # the part of `used` held by reservations not settled yet


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write_5m_tokens + self.cache_write_1h_tokens + self.cache_read_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


_spent_usd = func.coalesce(func.sum(case((_calls.c.status == "reserved", _calls.c.reserved_nanousd),
                                         else_=_calls.c.cost_nanousd)), 0)
_spent_tokens = func.coalesce(func.sum(case(
    (_calls.c.status == "reserved", _calls.c.reserved_tokens),
    else_=_calls.c.input_tokens + _calls.c.output_tokens + _calls.c.cache_write_5m_tokens
    + _calls.c.cache_write_1h_tokens + _calls.c.cache_read_tokens)), 0)


_in_flight_usd = func.coalesce(func.sum(case((_calls.c.status == "reserved", _calls.c.reserved_nanousd),
                                             else_=0)), 0)
_in_flight_tokens = func.coalesce(func.sum(case((_calls.c.status == "reserved", _calls.c.reserved_tokens),
                                                else_=0)), 0)


async def _used(conn: AsyncConnection, scope: str, *, user_id: int, thread_id: str | None, turn_id: str,
                day: str, month: str, in_flight: bool = False) -> int:
    """Spend in `scope` (settled + reserved); with in_flight, only what open reservations hold."""
    where: list[Any]
    measure: Any = _in_flight_usd if in_flight else _spent_usd
    if scope == "user_day":
        where = [_calls.c.user_id == user_id, _calls.c.day == day]
    elif scope == "user_month":
        where = [_calls.c.user_id == user_id, _calls.c.month == month]
    elif scope == "global_day":
        where = [_calls.c.day == day]
    elif scope in ("thread_usd", "thread_tokens", "thread_calls"):
        where = [_calls.c.thread_id == thread_id]
        if scope == "thread_tokens":
            measure = _in_flight_tokens if in_flight else _spent_tokens
        elif scope == "thread_calls":
            measure = func.count()
    elif scope == "turn_calls":
        where = [_calls.c.turn_id == turn_id]
        measure = func.count()
    else:
        raise ValueError(f"unknown limit scope {scope!r}")
    return int((await conn.execute(select(measure).where(*where))).scalar_one())


async def _user_id(conn: AsyncConnection, user: str) -> int:
    uid = (await conn.execute(select(_users.c.id).where(_users.c.name == user))).scalar_one_or_none()
    if uid is None:
        raise LookupError(f"no user {user!r}")
    return int(uid)


async def reserve(db: Database, *, user: str, thread_id: str | None, turn_id: str, model: str, purpose: str,
                  amount_nanousd: int, tokens: int, limits: Sequence[SpendLimit], now: float | None = None) -> str:
    """Check every limit and insert the reservation atomically; returns the reservation key."""
    now = time.time() if now is None else now
    day, month = utc_day(now), utc_day(now)[:7]
    async with db.write() as conn:
        user_id = await _user_id(conn, user)
        for limit in limits:
            kw: dict[str, Any] = {"user_id": user_id, "thread_id": thread_id, "turn_id": turn_id, "day": day,
                                  "month": month}
            used = await _used(conn, limit.scope, **kw)
            need = {"thread_tokens": tokens, "thread_calls": 1, "turn_calls": 1}.get(limit.scope, amount_nanousd)
            if used + need > limit.cap:
                # A call count is not given back when a call settles, so nothing is "held" there.
                held = 0 if limit.scope in _COUNT_SCOPES else await _used(conn, limit.scope, **kw, in_flight=True)
                raise LimitReached(limit, used, held)
        key = uuid.uuid4().hex
        await conn.execute(insert(_calls).values(
            key=key, user_id=user_id, thread_id=thread_id, turn_id=turn_id, model=model, purpose=purpose,
            status="reserved", reserved_nanousd=amount_nanousd, reserved_tokens=tokens, created_at=now,
            day=day, month=month))
    return key


async def settle(db: Database, *, key: str, usage: TokenUsage, cost_nanousd: int, status: str = "settled",
                 stop_reason: str | None = None, ttft_ms: float | None = None, latency_ms: float | None = None,
                 error: str | None = None) -> bool:
    """Replace a reservation by what the call really used ("released" when the call failed).
    False if it was no longer open (closed at its worst case by a restart)."""
    async with db.write() as conn:
        result = await conn.execute(update(_calls).where(_calls.c.key == key, _calls.c.status == "reserved").values(
            status=status, cost_nanousd=cost_nanousd, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens, cache_read_tokens=usage.cache_read_tokens,
            stop_reason=stop_reason, ttft_ms=ttft_ms, latency_ms=latency_ms, error=error))
        return bool(result.rowcount)


async def release_stale_reservations(db: Database) -> int:
    """At start-up no call is in flight: charge leftover reservations at their worst case (fail safe)."""
    async with db.write() as conn:
        result = await conn.execute(update(_calls).where(_calls.c.status == "reserved").values(
            status="released", cost_nanousd=_calls.c.reserved_nanousd, error="outcome unknown after restart"))
        return int(result.rowcount)


async def spent(db: Database, *, scope: str, user: str | None = None, thread_id: str | None = None,
                at: float | None = None) -> int:
    now = at or time.time()
    async with db.read() as conn:
        user_id = 0 if user is None else await _user_id(conn, user)
        return await _used(conn, scope, user_id=user_id, thread_id=thread_id, turn_id="",
                           day=utc_day(now), month=utc_day(now)[:7])


async def get_budget(db: Database, *, user: str) -> tuple[int | None, int | None]:
    async with db.read() as conn:
        row = (await conn.execute(select(_budgets.c.daily_nanousd, _budgets.c.monthly_nanousd)
                                  .join(_users, _users.c.id == _budgets.c.user_id)
                                  .where(_users.c.name == user))).first()
    return (row.daily_nanousd, row.monthly_nanousd) if row else (None, None)


async def set_budget(db: Database, *, user: str, daily_nanousd: int | None, monthly_nanousd: int | None) -> None:
    async with db.write() as conn:
        uid = await _user_id(conn, user)
        exists = (await conn.execute(select(_budgets.c.user_id).where(_budgets.c.user_id == uid))).first()
        values = {"daily_nanousd": daily_nanousd, "monthly_nanousd": monthly_nanousd}
        if exists:
            await conn.execute(update(_budgets).where(_budgets.c.user_id == uid).values(**values))
        else:
            await conn.execute(insert(_budgets).values(user_id=uid, **values))


async def usage_report(db: Database, *, by: str, user: str | None = None, since_day: str | None = None
                       ) -> list[dict[str, Any]]:
    """Settled and released calls grouped by user, day, model or thread (cost in nano-USD)."""
    group: dict[str, Column[Any]] = {"user": _users.c.name, "day": _calls.c.day, "model": _calls.c.model,
                                     "thread": _calls.c.thread_id}
    if by not in group:
        raise ValueError(f"--by must be one of {', '.join(group)}")
    key = group[by]
    stmt = (select(key.label("key"), func.count().label("calls"),
                   func.sum(_calls.c.input_tokens).label("input_tokens"),
                   func.sum(_calls.c.output_tokens).label("output_tokens"),
                   func.sum(_calls.c.cache_write_5m_tokens + _calls.c.cache_write_1h_tokens).label("cache_write"),
                   func.sum(_calls.c.cache_read_tokens).label("cache_read"),
                   func.sum(_calls.c.cost_nanousd).label("cost_nanousd"))
            .join(_users, _users.c.id == _calls.c.user_id)
            .where(_calls.c.status != "reserved").group_by(key).order_by(key))
    if user is not None:
        stmt = stmt.where(_users.c.name == user)
    if since_day is not None:
        stmt = stmt.where(_calls.c.day >= since_day)
    async with db.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(stmt)]
