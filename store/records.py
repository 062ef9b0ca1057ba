"""Append-only records: a deleted thread's approvals, tool calls and model calls stay for operators until a
purge past the retention period removes them deliberately, and the purge itself is recorded."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select, update

from store.db import Database
from store.models import (
    ALWAYS_APPROVE,
    APPROVALS,
    CONTEXT_SUMMARIES,
    MESSAGES,
    MODEL_CALLS,
    PURGES,
    THREAD_DELETIONS,
    THREADS,
    TOOL_CALLS,
    UI_STEPS,
)

DAY_S = 86_400.0


@dataclass(frozen=True)
class Purge:
    at: float
    by: str
    older_than_days: float
    threads: int
    messages: int
    approvals: int
    tool_calls: int
    model_calls_detached: int


async def purge_deleted(db: Database, *, older_than_days: float, by: str, now: float | None = None) -> Purge:
    """Remove the threads deleted at least `older_than_days` ago with everything they hold. Model-call rows
    are kept without their thread (they hold no content, only tokens and cost): spend totals and the
    budget caps they feed must not drop because a thread went. One transaction: all or nothing."""
    if older_than_days < 0:
        raise ValueError("older_than_days must be >= 0")
    at = time.time() if now is None else now
    cutoff = at - older_than_days * DAY_S
    due = select(THREAD_DELETIONS.c.thread_id).where(THREAD_DELETIONS.c.deleted_at <= cutoff)

    def count(conn: Connection, table: object) -> int:
        col = table.c.thread_id  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(table).where(col.in_(due))).scalar_one())  # type: ignore[arg-type]

    def purge(conn: Connection) -> Purge:
        threads = count(conn, THREAD_DELETIONS)
        counted = {name: count(conn, t) for name, t in (("messages", MESSAGES), ("approvals", APPROVALS),
                                                          ("tool_calls", TOOL_CALLS))}
        detached = conn.execute(update(MODEL_CALLS).where(MODEL_CALLS.c.thread_id.in_(due))
                                .values(thread_id=None)).rowcount
        # Children first, explicitly: no reliance on the foreign-key pragma being on for this connection.
        for table in (MESSAGES, APPROVALS, TOOL_CALLS, UI_STEPS, CONTEXT_SUMMARIES, ALWAYS_APPROVE):
            conn.execute(delete(table).where(table.c.thread_id.in_(due)))
        conn.execute(delete(THREADS).where(THREADS.c.id.in_(due)))
        conn.execute(delete(THREAD_DELETIONS).where(THREAD_DELETIONS.c.deleted_at <= cutoff))
        record = Purge(at=at, by=by, older_than_days=older_than_days, threads=threads,
                       model_calls_detached=int(detached), **counted)
        conn.execute(insert(PURGES).values(**record.__dict__))
        return record

    return await db.transact(purge)


async def purges(db: Database, *, limit: int = 50) -> list[Purge]:
    """For operators: the newest purges first."""
    async with db.read() as conn:
        rows = await conn.execute(select(PURGES).order_by(PURGES.c.at.desc()).limit(limit))
        return [Purge(at=r.at, by=r.by, older_than_days=r.older_than_days, threads=r.threads, messages=r.messages,
                      approvals=r.approvals, tool_calls=r.tool_calls, model_calls_detached=r.model_calls_detached)
                for r in rows]
