"""Read models for operators: the decision audit, spend per user/day/model, a thread's trace.

Operator-only by design: callers (the console) check the role before calling these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from store.approvals import _approval, _select
from store.db import Database
from store.models import APPROVALS, MODEL_CALLS, TOOL_CALLS, USERS
from store.values import Approval


async def decisions(db: Database, *, user: str | None = None, tool: str | None = None, status: str | None = None,
                    since: float | None = None, limit: int = 200) -> list[Approval]:
    stmt = _select().where(APPROVALS.c.status != "pending").order_by(APPROVALS.c.decided_at.desc()).limit(limit)
    if user:
        stmt = stmt.where(USERS.c.name == user)
    if tool:
        stmt = stmt.where(APPROVALS.c.tool == tool)
    if status:
        stmt = stmt.where(APPROVALS.c.status == status)
    if since is not None:
        stmt = stmt.where(APPROVALS.c.decided_at >= since)
    async with db.read() as conn:
        return [_approval(r) for r in await conn.execute(stmt)]


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
