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

from sqlalchemy import Column, Connection, String, and_, bindparam, case, func, insert, literal, or_, select, update

from store.db import Database
from store.models import BUDGETS, MODEL_CALLS, USERS

_calls = MODEL_CALLS
_budgets = BUDGETS
_users = USERS
SCOPES = ("user_day", "user_month", "global_day", "thread_usd", "thread_tokens", "thread_calls", "turn_calls")


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


_reserved = _calls.c.status == "reserved"
# Spend counts an open reservation at its worst case, a closed call at what it really cost.
_MEASURES: dict[str, tuple[Any, Any]] = {  # name: (spent, held by open reservations)
    "usd": (case((_reserved, _calls.c.reserved_nanousd), else_=_calls.c.cost_nanousd),
            case((_reserved, _calls.c.reserved_nanousd), else_=0)),
    "tokens": (case((_reserved, _calls.c.reserved_tokens),
                    else_=_calls.c.input_tokens + _calls.c.output_tokens + _calls.c.cache_write_5m_tokens
                    + _calls.c.cache_write_1h_tokens + _calls.c.cache_read_tokens),
               case((_reserved, _calls.c.reserved_tokens), else_=0)),
    # A call count is not given back when a call settles, so nothing is "held" there.
    "calls": (literal(1), literal(0)),
}
_SCOPE_MEASURE = {"user_day": "usd", "user_month": "usd", "global_day": "usd", "thread_usd": "usd",
                  "thread_tokens": "tokens", "thread_calls": "calls", "turn_calls": "calls"}


def _usage_statement() -> Any:
    """Every scope's (spent, held) and the user's id in ONE statement, built once with bound parameters:
    inside a reservation each round trip to the driver's thread holds the single writer, so fewer is faster.
    A NULL thread_id or turn_id matches nothing (SQL `= NULL`), so those scopes are then 0."""
    c = _calls.c
    uid = select(_users.c.id).where(_users.c.name == bindparam("user")).scalar_subquery()
    day, first, last = (bindparam(n, type_=String) for n in ("day", "month_first", "month_last"))
    # The month as a range of days, so it is a range scan of the (user_id, day) index, not all the user's rows.
    in_month = and_(c.user_id == uid, c.day >= first, c.day <= last)
    where = {"user_day": and_(c.user_id == uid, c.day == day), "user_month": in_month,
             "global_day": c.day == day, "thread": c.thread_id == bindparam("thread_id"),
             "turn": c.turn_id == bindparam("turn_id")}
    own = select(_budgets.c.daily_nanousd, _budgets.c.monthly_nanousd).where(_budgets.c.user_id == uid)
    cols: list[Any] = [uid.label("uid"), own.with_only_columns(_budgets.c.daily_nanousd).scalar_subquery()
                       .label("own_user_day"),
                       own.with_only_columns(_budgets.c.monthly_nanousd).scalar_subquery().label("own_user_month")]
    for scope, measure in _SCOPE_MEASURE.items():
        cond = where[scope] if scope in where else where[scope.split("_")[0]]
        for i, part in enumerate(("spent", "held")):
            cols.append(func.coalesce(func.sum(case((cond, _MEASURES[measure][i]), else_=0)), 0)
                        .label(f"{scope}_{part}"))
    # Each OR term is indexed (user_id+day, day, thread_id, turn_id): SQLite plans a MULTI-INDEX OR.
    return select(*cols).select_from(_calls).where(or_(where["user_month"], where["global_day"], where["thread"],
                                                       where["turn"]))


_USAGE = _usage_statement()
_RESERVE = insert(_calls).values(
    key=bindparam("p_key"), user_id=bindparam("p_user_id"), thread_id=bindparam("p_thread_id"),
    turn_id=bindparam("p_turn_id"), model=bindparam("p_model"), purpose=bindparam("p_purpose"), status="reserved",
    reserved_nanousd=bindparam("p_amount"), reserved_tokens=bindparam("p_tokens"), created_at=bindparam("p_now"),
    day=bindparam("p_day"), month=bindparam("p_month"))
_SETTLE = update(_calls).where(_calls.c.key == bindparam("p_key"), _calls.c.status == "reserved").values(
    status=bindparam("p_status"), cost_nanousd=bindparam("p_cost"), input_tokens=bindparam("p_input"),
    output_tokens=bindparam("p_output"), cache_write_5m_tokens=bindparam("p_write_5m"),
    cache_write_1h_tokens=bindparam("p_write_1h"), cache_read_tokens=bindparam("p_read"),
    stop_reason=bindparam("p_stop_reason"), ttft_ms=bindparam("p_ttft"), latency_ms=bindparam("p_latency"),
    error=bindparam("p_error"))


@dataclass(frozen=True)
class Usage:
    user_id: int | None  # None: no such user
    scopes: dict[str, tuple[int, int]]  # scope: (spent, held by open reservations)
    own_caps: dict[str, int]  # the user's own budget set by an operator: user_day / user_month caps

    def cap(self, limit: SpendLimit) -> SpendLimit:
        """The limit as it applies to this user: their own budget replaces the default cap."""
        own = self.own_caps.get(limit.scope)
        return limit if own is None else SpendLimit(limit.name, limit.scope, own)


def _usage_params(*, user: str | None, thread_id: str | None, turn_id: str | None, now: float) -> dict[str, Any]:
    day, month = utc_day(now), utc_day(now)[:7]
    return {"user": user, "thread_id": thread_id, "turn_id": turn_id or None, "day": day,
            "month_first": f"{month}-01", "month_last": f"{month}-31"}


def _usage(conn: Connection, *, user: str | None, thread_id: str | None, turn_id: str | None, now: float) -> Usage:
    return _usage_of(conn.execute(_USAGE, _usage_params(user=user, thread_id=thread_id, turn_id=turn_id, now=now)))


def _usage_of(result: Any) -> Usage:
    m = result.one()._mapping
    return Usage(user_id=None if m["uid"] is None else int(m["uid"]),
                 scopes={s: (int(m[f"{s}_spent"]), int(m[f"{s}_held"])) for s in _SCOPE_MEASURE},
                 own_caps={s: int(m[f"own_{s}"]) for s in ("user_day", "user_month") if m[f"own_{s}"] is not None})


async def reserve(db: Database, *, user: str, thread_id: str | None, turn_id: str, model: str, purpose: str,
                  amount_nanousd: int, tokens: int, limits: Sequence[SpendLimit], now: float | None = None) -> str:
    """Check every limit and insert the reservation atomically; returns the reservation key.

    The user's own budget (set by an operator) replaces the default cap of `user_day`/`user_month`,
    read in the same transaction as the spend it is checked against."""
    now = time.time() if now is None else now
    day, month = utc_day(now), utc_day(now)[:7]

    def check_and_insert(conn: Connection) -> str:
        usage = _usage(conn, user=user, thread_id=thread_id, turn_id=turn_id, now=now)
        if usage.user_id is None:
            raise LookupError(f"no user {user!r}")
        for default in limits:
            limit = usage.cap(default)
            used, held = usage.scopes[limit.scope]
            need = {"thread_tokens": tokens, "thread_calls": 1, "turn_calls": 1}.get(limit.scope, amount_nanousd)
            if used + need > limit.cap:
                raise LimitReached(limit, used, held)
        key = db.key_prefix + uuid.uuid4().hex
        conn.execute(_RESERVE, {"p_key": key, "p_user_id": usage.user_id, "p_thread_id": thread_id,
                                "p_turn_id": turn_id, "p_model": model, "p_purpose": purpose,
                                "p_amount": amount_nanousd, "p_tokens": tokens, "p_now": now, "p_day": day,
                                "p_month": month})
        return key

    return await db.transact(check_and_insert)


async def settle(db: Database, *, key: str, usage: TokenUsage, cost_nanousd: int, status: str = "settled",
                 stop_reason: str | None = None, ttft_ms: float | None = None, latency_ms: float | None = None,
                 error: str | None = None) -> bool:
    """Replace a reservation by what the call really used ("released" when the call failed).
    False if it was no longer open (closed at its worst case by a restart)."""
    params = {"p_key": key, "p_status": status, "p_cost": cost_nanousd, "p_input": usage.input_tokens,
              "p_output": usage.output_tokens, "p_write_5m": usage.cache_write_5m_tokens,
              "p_write_1h": usage.cache_write_1h_tokens, "p_read": usage.cache_read_tokens,
              "p_stop_reason": stop_reason, "p_ttft": ttft_ms, "p_latency": latency_ms, "p_error": error}
    return await db.transact(lambda conn: bool(conn.execute(_SETTLE, params).rowcount))


async def release_stale_reservations(db: Database) -> int:
    """At start-up no call is in flight: charge leftover reservations at their worst case (fail safe)."""
    stmt = update(_calls).where(_calls.c.status == "reserved").values(
        status="released", cost_nanousd=_calls.c.reserved_nanousd, error="outcome unknown after restart")
    return await db.transact(lambda conn: int(conn.execute(stmt).rowcount))


async def spent(db: Database, *, scope: str, user: str | None = None, thread_id: str | None = None,
                at: float | None = None) -> int:
    """What the next reservation in `scope` is checked against: settled costs plus open reservations."""
    if scope not in _SCOPE_MEASURE:
        raise ValueError(f"unknown limit scope {scope!r}")
    return (await usage_now(db, user=user, thread_id=thread_id, at=at)).scopes[scope][0]


async def usage_now(db: Database, *, user: str | None = None, thread_id: str | None = None,
                    at: float | None = None) -> Usage:
    """Every scope's spend and the user's own caps in one read (usage lines, cards, the console)."""
    params = _usage_params(user=user, thread_id=thread_id, turn_id=None, now=time.time() if at is None else at)
    usage = await db.query(lambda conn: _usage_of(conn.execute(_USAGE, params)))
    if user is not None and usage.user_id is None:
        raise LookupError(f"no user {user!r}")
    return usage


async def get_budget(db: Database, *, user: str) -> tuple[int | None, int | None]:
    async with db.read() as conn:
        row = (await conn.execute(select(_budgets.c.daily_nanousd, _budgets.c.monthly_nanousd)
                                  .join(_users, _users.c.id == _budgets.c.user_id)
                                  .where(_users.c.name == user))).first()
    return (row.daily_nanousd, row.monthly_nanousd) if row else (None, None)


async def set_budget(db: Database, *, user: str, daily_nanousd: int | None, monthly_nanousd: int | None) -> None:
    values = {"daily_nanousd": daily_nanousd, "monthly_nanousd": monthly_nanousd}

    def put(conn: Connection) -> None:
        uid = conn.execute(select(_users.c.id).where(_users.c.name == user)).scalar_one_or_none()
        if uid is None:
            raise LookupError(f"no user {user!r}")
        if conn.execute(select(_budgets.c.user_id).where(_budgets.c.user_id == uid)).first():
            conn.execute(update(_budgets).where(_budgets.c.user_id == uid).values(**values))
        else:
            conn.execute(insert(_budgets).values(user_id=uid, **values))

    await db.transact(put)


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


async def last_turn(db: Database, *, thread_id: str) -> tuple[str, int] | None:
    """The turn id of the thread's latest model call and how many chat calls that turn has made."""
    def read(conn: Connection) -> tuple[str, int] | None:
        turn_id = conn.execute(select(MODEL_CALLS.c.turn_id).where(MODEL_CALLS.c.thread_id == thread_id)
                               .order_by(MODEL_CALLS.c.id.desc()).limit(1)).scalar_one_or_none()
        if not turn_id:
            return None
        calls = conn.execute(select(func.count()).where(MODEL_CALLS.c.turn_id == turn_id,
                                                        MODEL_CALLS.c.purpose == "chat")).scalar_one()
        return str(turn_id), int(calls)

    return await db.query(read)


async def last_chat_stop(db: Database, *, thread_id: str) -> str | None:
    """The stop_reason of the thread's latest settled chat call (None if it has none)."""
    async with db.read() as conn:
        return (await conn.execute(select(MODEL_CALLS.c.stop_reason).where(
            MODEL_CALLS.c.thread_id == thread_id, MODEL_CALLS.c.purpose == "chat", MODEL_CALLS.c.status == "settled")
            .order_by(MODEL_CALLS.c.id.desc()).limit(1))).scalar_one_or_none()
