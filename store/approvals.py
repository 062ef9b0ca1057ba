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

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from store import changes
from store.db import Database
from store.fencing import Fence, require_lease
from store.models import ALWAYS_APPROVE, APPROVALS, THREAD_DELETIONS, THREADS, TOOL_CALLS, USERS
from store.threads import LIVE, NotFound, owner_in
from store.values import Approval, ToolOutcome

_appr = APPROVALS
_calls = TOOL_CALLS
_threads = THREADS
_users = USERS
DECISIONS = ("approved", "rejected")

_cols = (*_appr.c, _users.c.name.label("owner"), THREAD_DELETIONS.c.deleted_at.label("thread_deleted_at"))


def _approval(r: Any) -> Approval:
    return Approval(id=r.id, thread_id=r.thread_id, owner=r.owner, tool_use_id=r.tool_use_id, tool=r.tool,
                    args=json.loads(r.args_json), args_digest=r.args_digest, risk=r.risk,
                    untrusted_sources=tuple(json.loads(r.untrusted_sources_json)), route=r.route,
                    status=r.status, requested_at=r.requested_at, expires_at=r.expires_at,
                    decided_at=r.decided_at, decided_by=r.decided_by, reason=r.reason,
                    executed=r.executed_at is not None, decided_via=r.decided_via,
                    thread_deleted=r.thread_deleted_at is not None)


def _select() -> Any:
    return (select(*_cols).join(_threads, _threads.c.id == _appr.c.thread_id)
            .join(_users, _users.c.id == _threads.c.owner_id)
            .outerjoin(THREAD_DELETIONS, THREAD_DELETIONS.c.thread_id == _appr.c.thread_id))


_this_call = (_calls.c.thread_id == bindparam("p_thread_id"), _calls.c.tool_use_id == bindparam("p_tool_use_id"))
_CLEAR_RUNNING = delete(_calls).where(*_this_call, _calls.c.status == "running")
_START_CALL = insert(_calls).values(thread_id=bindparam("p_thread_id"), tool_use_id=bindparam("p_tool_use_id"),
                                    tool=bindparam("p_tool"), args_json=bindparam("p_args_json"), status="running",
                                    output="", started_at=bindparam("p_now"))
_FINISH_CALL = update(_calls).where(*_this_call).values(
    status=bindparam("p_status"), output=bindparam("p_output"), is_error=bindparam("p_is_error"),
    duration_ms=bindparam("p_duration_ms"))


async def request_approval(db: Database, *, owner: str, thread_id: str, tool_use_id: str, tool: str,
                           args: dict[str, Any], args_digest: str, risk: str, untrusted_sources: list[str],
                           route: str, timeout_s: float) -> Approval:
    """Create the pending row for a tool_use, or return the one that already exists (resume)."""
    now = time.time()

    def request(conn: Connection) -> Approval:
        if owner_in(conn, thread_id=thread_id) != owner:
            raise NotFound("no such thread")
        this = (_appr.c.thread_id == thread_id, _appr.c.tool_use_id == tool_use_id)
        existing = conn.execute(_select().where(*this)).first()
        if existing is not None:
            return _approval(existing)
        conn.execute(insert(_appr).values(
            id=uuid.uuid4().hex, thread_id=thread_id, tool_use_id=tool_use_id, tool=tool,
            args_json=json.dumps(args, sort_keys=True, ensure_ascii=False), args_digest=args_digest,
            risk=risk, untrusted_sources_json=json.dumps(sorted(set(untrusted_sources))), route=route,
            status="pending", requested_at=now, expires_at=now + timeout_s))
        return _approval(conn.execute(_select().where(*this)).one())

    created = await db.transact(request)
    changes.notify(changes.APPROVALS)
    return created


async def get_approval(db: Database, *, approval_id: str, viewer: str, viewer_is_operator: bool = False) -> Approval:
    async with db.read() as conn:
        row = (await conn.execute(_select().where(_appr.c.id == approval_id))).first()
    if row is None or (not viewer_is_operator and (row.owner != viewer or row.thread_deleted_at is not None)):
        raise NotFound("no such approval")
    return _approval(row)


async def approval_for_tool_use(db: Database, *, owner: str, thread_id: str, tool_use_id: str) -> Approval | None:
    async with db.read() as conn:
        row = (await conn.execute(_select().where(_appr.c.tool_use_id == tool_use_id, _appr.c.thread_id == thread_id,
                                                  _users.c.name == owner, LIVE))).first()
    return _approval(row) if row else None


async def pending_approvals(db: Database, *, owner: str | None, thread_id: str | None = None) -> list[Approval]:
    """Pending approvals of one owner (optionally one thread); owner=None is the operator's queue."""
    stmt = _select().where(_appr.c.status == "pending").order_by(_appr.c.requested_at)
    if owner is not None:
        stmt = stmt.where(_users.c.name == owner, LIVE)
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
    approval, _changed = await record_decision(db, approval_id=approval_id, decision=decision,
                                               decided_by=decided_by, via=via, reason=reason, as_operator=as_operator)
    return approval


async def record_decision(db: Database, *, approval_id: str, decision: str, decided_by: str, via: str,
                          reason: str | None = None, as_operator: bool = False) -> tuple[Approval, bool]:
    """`decide`, also saying whether this call changed the row (False: already decided, or not allowed)."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}")
    now = time.time()

    def record(conn: Connection) -> tuple[Approval, bool]:
        row = conn.execute(_select().where(_appr.c.id == approval_id)).first()
        if row is None:
            raise NotFound("no such approval")
        # The owner decides user-routed calls and may always veto (reject) one routed to an operator;
        # only approving an operator-routed call needs the operator.
        may_decide = as_operator or (row.owner == decided_by and (row.route == "user" or decision == "rejected"))
        if not as_operator and (row.owner != decided_by or row.thread_deleted_at is not None):
            raise NotFound("no such approval")  # foreign or deleted: indistinguishable from unknown
        changed = False
        if row.status == "pending" and may_decide:
            pending = update(_appr).where(_appr.c.id == approval_id, _appr.c.status == "pending")
            if row.expires_at <= now:
                values = {"status": "expired", "decided_at": now, "decided_by": "system", "decided_via": "system",
                          "reason": "no decision before the deadline"}
            else:
                values = {"status": decision, "decided_at": now, "decided_by": decided_by, "decided_via": via,
                          "reason": (reason or None) and reason[:500]}
            changed = conn.execute(pending.values(**values)).rowcount == 1
        return _approval(conn.execute(_select().where(_appr.c.id == approval_id)).one()), changed

    decided = await db.transact(record)
    changes.notify(changes.APPROVALS)
    return decided


async def expire_or_reject_pending(db: Database, *, thread_id: str, status: str, reason: str,
                                   only_due: bool = False) -> int:
    """Close pending approvals of a thread (expired, or rejected by the system); returns how many."""
    now = time.time()
    stmt = update(_appr).where(_appr.c.thread_id == thread_id, _appr.c.status == "pending")
    if only_due:
        stmt = stmt.where(_appr.c.expires_at <= now)
    stmt = stmt.values(status=status, decided_at=now, decided_by="system", decided_via="system", reason=reason)
    closed = await db.transact(lambda conn: int(conn.execute(stmt).rowcount))
    if closed:
        changes.notify(changes.APPROVALS)
    return closed


async def claim_execution(db: Database, *, approval_id: str, args_digest: str, fence: Fence | None = None) -> bool:
    """Atomically mark an approved row as executed. True at most once, only for matching args, and never
    once the thread's owner deleted it (the user walked away from it: fail closed). With `fence`: LeaseLost
    (and the row left unclaimed) once that lease was taken over."""
    stmt = update(_appr).where(_appr.c.id == approval_id, _appr.c.status == "approved",
                               _appr.c.args_digest == args_digest, _appr.c.executed_at.is_(None),
                               ~THREAD_DELETIONS.select().where(THREAD_DELETIONS.c.thread_id == _appr.c.thread_id)
                               .exists())

    def claim(conn: Connection) -> bool:
        require_lease(conn, fence)
        return bool(conn.execute(stmt.values(executed_at=time.time())).rowcount == 1)

    return await db.transact(claim)


async def start_tool_call(db: Database, *, thread_id: str, tool_use_id: str, tool: str,
                          args: dict[str, Any], fence: Fence | None = None) -> None:
    """Record that a tool starts; with `fence`, LeaseLost (nothing recorded: do not run it) once that lease
    was taken over."""
    params = {"p_thread_id": thread_id, "p_tool_use_id": tool_use_id, "p_tool": tool,
              "p_args_json": json.dumps(args, sort_keys=True), "p_now": time.time()}

    def start(conn: Connection) -> None:
        require_lease(conn, fence)
        # A row left "running" by a crash is restarted in place (only read-only calls get here twice).
        conn.execute(_CLEAR_RUNNING, params)
        conn.execute(_START_CALL, params)

    await db.transact(start)


async def finish_tool_call(db: Database, *, thread_id: str, tool_use_id: str, output: str, is_error: bool,
                           duration_ms: float) -> None:
    params = {"p_thread_id": thread_id, "p_tool_use_id": tool_use_id, "p_status": "error" if is_error else "done",
              "p_output": output, "p_is_error": is_error, "p_duration_ms": duration_ms}
    await db.transact(lambda conn: conn.execute(_FINISH_CALL, params))


async def tool_outcomes(db: Database, *, owner: str, thread_id: str) -> dict[str, ToolOutcome]:
    stmt = (select(_calls).join(_threads, _threads.c.id == _calls.c.thread_id)
            .join(_users, _users.c.id == _threads.c.owner_id)
            .where(_calls.c.thread_id == thread_id, _users.c.name == owner, LIVE))
    rows = await db.query(lambda conn: conn.execute(stmt).all())
    return {r.tool_use_id: ToolOutcome(tool_use_id=r.tool_use_id, tool=r.tool, args=json.loads(r.args_json),
                                       status=r.status, output=r.output, is_error=bool(r.is_error),
                                       duration_ms=r.duration_ms)
            for r in rows}


async def set_always_approve(db: Database, *, owner: str, thread_id: str, tool: str, on: bool) -> None:
    """Turn "approve always" for a tool in one of the owner's threads on or off."""
    def put(conn: Connection) -> None:
        if owner_in(conn, thread_id=thread_id) != owner:
            raise NotFound("no such thread")
        conn.execute(delete(ALWAYS_APPROVE).where(ALWAYS_APPROVE.c.thread_id == thread_id,
                                                  ALWAYS_APPROVE.c.tool == tool))
        if on:
            conn.execute(insert(ALWAYS_APPROVE).values(thread_id=thread_id, tool=tool, created_at=time.time()))

    await db.transact(put)


async def always_approved(db: Database, *, owner: str, thread_id: str) -> set[str]:
    async with db.read() as conn:
        rows = await conn.execute(select(ALWAYS_APPROVE.c.tool)
                                  .join(_threads, _threads.c.id == ALWAYS_APPROVE.c.thread_id)
                                  .join(_users, _users.c.id == _threads.c.owner_id)
                                  .where(ALWAYS_APPROVE.c.thread_id == thread_id, _users.c.name == owner, LIVE))
        return {r.tool for r in rows}
