"""Read models for operators: the decision audit, spend per user/day/model, a thread's trace.

Operator-only by design: callers (the console) check the role before calling these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select

from store.approvals import _approval, _select
from store.db import Database
from store.models import APPROVALS, MODEL_CALLS, TOOL_CALLS, USERS
from store.values import Approval

DECIDED = ("approved", "rejected", "expired")
MAX_PAGE = 200


@dataclass(frozen=True)
class AuditFilter:
    """Which decisions to list: every field optional; days are UTC epoch seconds, `until` exclusive."""

    user: str | None = None
    tool: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class AuditPage:
    rows: list[Approval]
    next_cursor: str | None  # pass back as `after` for the next (older) page; None on the last page


def _cursor(a: Approval) -> str:
    return f"{a.decided_at!r}~{a.id}"  # repr of a float reads back exactly


def _parse_cursor(cursor: str) -> tuple[float, str]:
    at, sep, approval_id = cursor.partition("~")
    try:
        value = float(at)
    except ValueError:
        value = float("nan")
    if not sep or value != value or not approval_id.isalnum() or len(approval_id) > 64:
        raise ValueError("not a cursor this audit log handed out")
    return value, approval_id


async def decisions_page(db: Database, *, where: AuditFilter = AuditFilter(), after: str | None = None,
                         limit: int = 50) -> AuditPage:
    """Decided approvals, newest first, in a stable order (decided_at, then id, both descending): keyset
    paging, so rows decided while someone pages never shift or repeat the pages they already saw."""
    if where.status is not None and where.status not in DECIDED:
        raise ValueError(f"decision must be one of {', '.join(DECIDED)}")
    limit = max(1, min(limit, MAX_PAGE))
    stmt = (_select().where(APPROVALS.c.status != "pending", APPROVALS.c.decided_at.is_not(None))
            .order_by(APPROVALS.c.decided_at.desc(), APPROVALS.c.id.desc()).limit(limit + 1))
    if where.user:
        stmt = stmt.where(USERS.c.name == where.user)
    if where.tool:
        stmt = stmt.where(APPROVALS.c.tool == where.tool)
    if where.status:
        stmt = stmt.where(APPROVALS.c.status == where.status)
    if where.since is not None:
        stmt = stmt.where(APPROVALS.c.decided_at >= where.since)
    if where.until is not None:
        stmt = stmt.where(APPROVALS.c.decided_at < where.until)
    if after is not None:
        at, approval_id = _parse_cursor(after)
        stmt = stmt.where(or_(APPROVALS.c.decided_at < at,
                              and_(APPROVALS.c.decided_at == at, APPROVALS.c.id < approval_id)))
    async with db.read() as conn:
        rows = [_approval(r) for r in await conn.execute(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows=rows, next_cursor=_cursor(rows[-1]) if more else None)


async def decisions(db: Database, *, user: str | None = None, tool: str | None = None, status: str | None = None,
                    since: float | None = None, limit: int = MAX_PAGE) -> list[Approval]:
    """The newest decisions (first page only): for scripts and tests; the console pages with decisions_page."""
    page = await decisions_page(db, where=AuditFilter(user=user, tool=tool, status=status, since=since), limit=limit)
    return page.rows


@dataclass(frozen=True)
class SpendRow:
    user: str
    day: str
    model: str
    calls: int
    cost_nanousd: int


async def spend_by_user_day_model(db: Database, *, since_day: str | None = None) -> list[SpendRow]:
    stmt = (select(USERS.c.name, MODEL_CALLS.c.day, MODEL_CALLS.c.model, func.count().label("calls"),
                   func.sum(MODEL_CALLS.c.cost_nanousd).label("cost"))
            .join(USERS, USERS.c.id == MODEL_CALLS.c.user_id).where(MODEL_CALLS.c.status != "reserved")
            .group_by(USERS.c.name, MODEL_CALLS.c.day, MODEL_CALLS.c.model)
            .order_by(MODEL_CALLS.c.day, USERS.c.name, MODEL_CALLS.c.model))
    if since_day:
        stmt = stmt.where(MODEL_CALLS.c.day >= since_day)
    async with db.read() as conn:
        return [SpendRow(user=r.name, day=r.day, model=r.model, calls=int(r.calls), cost_nanousd=int(r.cost or 0))
                for r in await conn.execute(stmt)]


async def thread_trace(db: Database, *, thread_id: str) -> dict[str, list[dict[str, Any]]]:
    """Model calls, tool calls and approvals of a thread, in time order: the per-turn waterfall."""
    async with db.read() as conn:
        calls = await conn.execute(select(MODEL_CALLS).where(MODEL_CALLS.c.thread_id == thread_id)
                                   .order_by(MODEL_CALLS.c.created_at))
        tools = await conn.execute(select(TOOL_CALLS).where(TOOL_CALLS.c.thread_id == thread_id)
                                   .order_by(TOOL_CALLS.c.started_at))
        approvals = await conn.execute(select(APPROVALS).where(APPROVALS.c.thread_id == thread_id)
                                       .order_by(APPROVALS.c.requested_at))
        return {"model_calls": [dict(r._mapping) for r in calls], "tool_calls": [dict(r._mapping) for r in tools],
                "approvals": [dict(r._mapping) for r in approvals]}
