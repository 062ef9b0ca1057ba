"""Approvals (the gate for side effects) and tool-call outcomes.

A decision is bound to one approval row: first decision wins, later ones change nothing, and the
tool may run only after `claim_execution` flips `executed_at` once for an approved, unexpired row
whose digest matches the arguments about to run.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import delete, insert, select, update

from store.db import Database
from store.models import ALWAYS_APPROVE, APPROVALS, THREADS, TOOL_CALLS, USERS
from store.threads import NotFound
from store.values import Approval, ToolOutcome

_appr = APPROVALS
_calls = TOOL_CALLS
_threads = THREADS
_users = USERS
DECISIONS = ("approved", "rejected")

_cols = (*_appr.c, _users.c.name.label("owner"))


def _approval(r: Any) -> Approval:
    return Approval(id=r.id, thread_id=r.thread_id, owner=r.owner, tool_use_id=r.tool_use_id, tool=r.tool,
                    args=json.loads(r.args_json), args_digest=r.args_digest, risk=r.risk,
                    untrusted_sources=tuple(json.loads(r.untrusted_sources_json)), route=r.route,
                    status=r.status, requested_at=r.requested_at, expires_at=r.expires_at,
                    decided_at=r.decided_at, decided_by=r.decided_by, reason=r.reason,
                    executed=r.executed_at is not None, decided_via=r.decided_via)


def _select() -> Any:
    return (select(*_cols).join(_threads, _threads.c.id == _appr.c.thread_id)
            .join(_users, _users.c.id == _threads.c.owner_id))


async def request_approval(db: Database, *, owner: str, thread_id: str, tool_use_id: str, tool: str,
                           args: dict[str, Any], args_digest: str, risk: str, untrusted_sources: list[str],
                           route: str, timeout_s: float) -> Approval:
    """Create the pending row for a tool_use, or return the one that already exists (resume)."""
    now = time.time()
    async with db.write() as conn:
        owned = await conn.execute(select(_threads.c.id).join(_users, _users.c.id == _threads.c.owner_id)
                                   .where(_threads.c.id == thread_id, _users.c.name == owner))
        if owned.first() is None:
            raise NotFound("no such thread")
        this = (_appr.c.thread_id == thread_id, _appr.c.tool_use_id == tool_use_id)
        existing = (await conn.execute(_select().where(*this))).first()
        if existing is not None:
            return _approval(existing)
        await conn.execute(insert(_appr).values(
            id=uuid.uuid4().hex, thread_id=thread_id, tool_use_id=tool_use_id, tool=tool,
            args_json=json.dumps(args, sort_keys=True, ensure_ascii=False), args_digest=args_digest,
            risk=risk, untrusted_sources_json=json.dumps(sorted(set(untrusted_sources))), route=route,
            status="pending", requested_at=now, expires_at=now + timeout_s))
        row = (await conn.execute(_select().where(*this))).one()
    return _approval(row)


async def get_approval(db: Database, *, approval_id: str, viewer: str, viewer_is_operator: bool = False) -> Approval:
    async with db.read() as conn:
        row = (await conn.execute(_select().where(_appr.c.id == approval_id))).first()
    if row is None or (row.owner != viewer and not viewer_is_operator):
        raise NotFound("no such approval")
    return _approval(row)


async def approval_for_tool_use(db: Database, *, owner: str, thread_id: str, tool_use_id: str) -> Approval | None:
    async with db.read() as conn:
        row = (await conn.execute(_select().where(_appr.c.tool_use_id == tool_use_id, _appr.c.thread_id == thread_id,
                                                  _users.c.name == owner))).first()
    return _approval(row) if row else None


async def pending_approvals(db: Database, *, owner: str | None, thread_id: str | None = None) -> list[Approval]:
    """Pending approvals of one owner (optionally one thread); owner=None is the operator's queue."""
    stmt = _select().where(_appr.c.status == "pending").order_by(_appr.c.requested_at)
    if owner is not None:
        stmt = stmt.where(_users.c.name == owner)
    if thread_id is not None:
        stmt = stmt.where(_appr.c.thread_id == thread_id)
    async with db.read() as conn:
        return [_approval(r) for r in await conn.execute(stmt)]


async def decide(db: Database, *, approval_id: str, decision: str, decided_by: str, via: str,
                 reason: str | None = None, as_operator: bool = False) -> Approval:
    """Record a decision if the row is still pending, unexpired, and the decider may decide it.

    Returns the row as it stands afterwards; raises NotFound for unknown or foreign approvals.
    A second decision, a replay or a decision after expiry leaves the row unchanged.
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}")
    now = time.time()
    async with db.write() as conn:
        row = (await conn.execute(_select().where(_appr.c.id == approval_id))).first()
        if row is None:
            raise NotFound("no such approval")
        may_decide = as_operator or (row.owner == decided_by and row.route == "user")
        if row.owner != decided_by and not as_operator:
            raise NotFound("no such approval")  # foreign: indistinguishable from unknown
        if row.status == "pending" and may_decide:
            if row.expires_at <= now:
                await conn.execute(update(_appr).where(_appr.c.id == approval_id, _appr.c.status == "pending")
                                   .values(status="expired", decided_at=now, decided_by="system",
                                           decided_via="system", reason="no decision before the deadline"))
            else:
                await conn.execute(update(_appr).where(_appr.c.id == approval_id, _appr.c.status == "pending")
                                   .values(status=decision, decided_at=now, decided_by=decided_by,
                                           decided_via=via, reason=(reason or None) and reason[:500]))
        row = (await conn.execute(_select().where(_appr.c.id == approval_id))).one()
    return _approval(row)


async def expire_or_reject_pending(db: Database, *, thread_id: str, status: str, reason: str,
                                   only_due: bool = False) -> int:
    """Close pending approvals of a thread (expired, or rejected by the system); returns how many."""
    now = time.time()
    stmt = update(_appr).where(_appr.c.thread_id == thread_id, _appr.c.status == "pending")
    if only_due:
        stmt = stmt.where(_appr.c.expires_at <= now)
    async with db.write() as conn:
        result = await conn.execute(stmt.values(status=status, decided_at=now, decided_by="system",
                                                decided_via="system", reason=reason))
        return int(result.rowcount)


async def claim_execution(db: Database, *, approval_id: str, args_digest: str) -> bool:
    """Atomically mark an approved row as executed. True at most once, and only for matching args."""
    async with db.write() as conn:
        result = await conn.execute(update(_appr).where(
            _appr.c.id == approval_id, _appr.c.status == "approved", _appr.c.args_digest == args_digest,
            _appr.c.executed_at.is_(None)).values(executed_at=time.time()))
        return result.rowcount == 1


async def start_tool_call(db: Database, *, thread_id: str, tool_use_id: str, tool: str,
                          args: dict[str, Any]) -> None:
    async with db.write() as conn:
        # A row left "running" by a crash is restarted in place (only read-only calls get here twice).
        await conn.execute(delete(_calls).where(_calls.c.thread_id == thread_id, _calls.c.tool_use_id == tool_use_id,
                                                _calls.c.status == "running"))
        await conn.execute(insert(_calls).values(thread_id=thread_id, tool_use_id=tool_use_id, tool=tool,
                                                 args_json=json.dumps(args, sort_keys=True), status="running",
                                                 output="", started_at=time.time()))


async def finish_tool_call(db: Database, *, thread_id: str, tool_use_id: str, output: str, is_error: bool,
                           duration_ms: float) -> None:
    async with db.write() as conn:
        await conn.execute(update(_calls).where(_calls.c.thread_id == thread_id,
                                                _calls.c.tool_use_id == tool_use_id).values(
            status="error" if is_error else "done", output=output, is_error=is_error, duration_ms=duration_ms))


async def tool_outcomes(db: Database, *, owner: str, thread_id: str) -> dict[str, ToolOutcome]:
    stmt = (select(_calls).join(_threads, _threads.c.id == _calls.c.thread_id)
            .join(_users, _users.c.id == _threads.c.owner_id)
            .where(_calls.c.thread_id == thread_id, _users.c.name == owner))
    async with db.read() as conn:
        return {r.tool_use_id: ToolOutcome(tool_use_id=r.tool_use_id, tool=r.tool, args=json.loads(r.args_json),
                                           status=r.status,
                                           output=r.output, is_error=bool(r.is_error), duration_ms=r.duration_ms)
                for r in await conn.execute(stmt)}


async def set_always_approve(db: Database, *, owner: str, thread_id: str, tool: str, on: bool) -> None:
    """Turn "approve always" for a tool in one of the owner's threads on or off."""
    async with db.write() as conn:
        owned = await conn.execute(select(_threads.c.id).join(_users, _users.c.id == _threads.c.owner_id)
                                   .where(_threads.c.id == thread_id, _users.c.name == owner))
        if owned.first() is None:
            raise NotFound("no such thread")
        await conn.execute(delete(ALWAYS_APPROVE).where(ALWAYS_APPROVE.c.thread_id == thread_id,
                                                        ALWAYS_APPROVE.c.tool == tool))
        if on:
            await conn.execute(insert(ALWAYS_APPROVE).values(thread_id=thread_id, tool=tool, created_at=time.time()))


async def always_approved(db: Database, *, owner: str, thread_id: str) -> set[str]:
    async with db.read() as conn:
        rows = await conn.execute(select(ALWAYS_APPROVE.c.tool)
                                  .join(_threads, _threads.c.id == ALWAYS_APPROVE.c.thread_id)
                                  .join(_users, _users.c.id == _threads.c.owner_id)
                                  .where(ALWAYS_APPROVE.c.thread_id == thread_id, _users.c.name == owner))
        return {r.tool for r in rows}
