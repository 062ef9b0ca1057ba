"""Shared state of several app processes on one database: the process registry and its sweeper, thread
leases, thread watchers and due resumes (tables in store/cluster_tables.py).

Every guarantee is one conditional statement, so it holds on PostgreSQL at READ COMMITTED (a concurrent
UPDATE of the same row waits, then re-checks its WHERE on the new row) and on SQLite (one writer)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, case, delete, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from store.cluster_tables import APP_PROCESSES, DUE_RESUMES, THREAD_LEASES, THREAD_WATCHERS
from store.db import Database
from store.models import MODEL_CALLS

WAKEUP_CHANNEL = "tollgate_wakeup"
_proc, _lease, _watch, _due = APP_PROCESSES, THREAD_LEASES, THREAD_WATCHERS, DUE_RESUMES


def _upsert(conn: Connection, table: Any) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _alive(alive_since: float) -> Any:
    return select(_proc.c.id).where(_proc.c.heartbeat_at >= alive_since)


@dataclass(frozen=True)
class SweptProcess:
    process_id: str
    reservations: int  # closed at their worst case: the process died with the call's outcome unknown
    leases: int
    watchers: int


# --- process registry -------------------------------------------------------------------------------

async def register_process(db: Database, *, process_id: str, host: str, pid: int, now: float) -> None:
    await db.transact(lambda c: c.execute(insert(_proc).values(id=process_id, host=host, pid=pid, started_at=now,
                                                               heartbeat_at=now)))


async def heartbeat(db: Database, *, process_id: str, now: float) -> bool:
    """False: this process was declared dead by a peer (its leases and reservations are gone)."""
    stmt = update(_proc).where(_proc.c.id == process_id).values(heartbeat_at=now)
    return await db.transact(lambda c: bool(c.execute(stmt).rowcount))


async def dead_processes(db: Database, *, alive_since: float) -> list[str]:
    stmt = select(_proc.c.id).where(_proc.c.heartbeat_at < alive_since)
    return await db.query(lambda conn: [r.id for r in conn.execute(stmt)])


async def sweep_process(db: Database, *, process_id: str, alive_since: float | None = None) -> SweptProcess | None:
    """Close the work of a dead process in one transaction: its open reservations are charged at their
    worst case, its leases freed, its watchers dropped, its row deleted. With `alive_since`, only if its
    heartbeat is still older than that (a peer that came back is left alone); None when nothing was swept."""

    def sweep(conn: Connection) -> SweptProcess | None:
        gone = delete(_proc).where(_proc.c.id == process_id)
        if alive_since is not None:
            gone = gone.where(_proc.c.heartbeat_at < alive_since)
        if not conn.execute(gone).rowcount and alive_since is not None:
            return None
        c = MODEL_CALLS.c
        reservations = conn.execute(
            update(MODEL_CALLS).where(c.status == "reserved", c.key.startswith(process_id + ".", autoescape=True))
            .values(status="released", cost_nanousd=c.reserved_nanousd,
                    error="outcome unknown: its process died")).rowcount
        leases = conn.execute(update(_lease).where(_lease.c.holder == process_id).values(holder=None)).rowcount
        watchers = conn.execute(delete(_watch).where(_watch.c.process_id == process_id)).rowcount
        return SweptProcess(process_id, int(reservations), int(leases), int(watchers))

    return await db.transact(sweep)


async def forget_all_processes(db: Database) -> int:
    """SQLite: one process per file, so at start-up every registered process is a former self."""
    return await db.transact(lambda c: int(c.execute(delete(_proc)).rowcount))


# --- thread leases ------------------------------------------------------------------------------------

async def acquire_lease(db: Database, *, thread_id: str, holder: str, alive_since: float, now: float) -> int | None:
    """The lease's new epoch, or None while a live process holds it."""

    def take(conn: Connection) -> int | None:
        free = or_(_lease.c.holder.is_(None), _lease.c.holder.not_in(_alive(alive_since)))
        row = conn.execute(update(_lease).where(_lease.c.thread_id == thread_id, free)
                           .values(holder=holder, epoch=_lease.c.epoch + 1, acquired_at=now)
                           .returning(_lease.c.epoch)).first()
        if row is not None:
            return int(row.epoch)
        new = _upsert(conn, _lease).values(thread_id=thread_id, holder=holder, epoch=1, acquired_at=now)
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT through SQLAlchemy.
        if conn.execute(new.on_conflict_do_nothing(index_elements=["thread_id"]).returning(_lease.c.epoch)).first():
            return 1
        return None

    return await db.transact(take)


async def release_lease(db: Database, *, thread_id: str, holder: str, epoch: int) -> bool:
    """False: the lease was taken over meanwhile (this process had been declared dead)."""
    stmt = update(_lease).where(_lease.c.thread_id == thread_id, _lease.c.holder == holder,
                                _lease.c.epoch == epoch).values(holder=None)
    return await db.transact(lambda c: bool(c.execute(stmt).rowcount))


async def lease_holder(db: Database, *, thread_id: str, alive_since: float) -> str | None:
    stmt = select(_lease.c.holder).where(_lease.c.thread_id == thread_id, _lease.c.holder.in_(_alive(alive_since)))
    return await db.query(lambda conn: conn.execute(stmt).scalar_one_or_none())


# --- watchers and due resumes ---------------------------------------------------------------------------

async def watch(db: Database, *, thread_id: str, process_id: str, now: float) -> None:
    def put(conn: Connection) -> None:
        stmt = _upsert(conn, _watch).values(thread_id=thread_id, process_id=process_id, at=now)
        conn.execute(stmt.on_conflict_do_update(index_elements=["thread_id"],
                                                set_={"process_id": process_id, "at": now}))

    await db.transact(put)


async def watcher_of(db: Database, *, thread_id: str, alive_since: float) -> str | None:
    """The live process whose browser socket shows the thread, if any."""
    async with db.read() as conn:
        return (await conn.execute(select(_watch.c.process_id).where(
            _watch.c.thread_id == thread_id, _watch.c.process_id.in_(_alive(alive_since))))).scalar_one_or_none()


def _notify(conn: Connection, thread_id: str) -> None:
    if conn.dialect.name == "postgresql":  # delivered on commit only: the row is there before the wake-up
        conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": WAKEUP_CHANNEL, "payload": thread_id})


async def request_resume(db: Database, *, thread_id: str, owner: str, at: float, now: float) -> None:
    """Resume the thread at `at` (the earlier of this and any request already there); wakes every process
    when it is due already. Any claim is dropped: the thread has news."""

    def put(conn: Connection) -> None:
        # A fresh row starts at a random version: one deleted and re-made meanwhile is never taken for the
        # version a claimer still holds.
        stmt = _upsert(conn, _due).values(thread_id=thread_id, owner=owner, due_at=at, version=secrets.randbits(31))
        earlier = case((stmt.excluded.due_at < _due.c.due_at, stmt.excluded.due_at), else_=_due.c.due_at)
        conn.execute(stmt.on_conflict_do_update(index_elements=["thread_id"], set_={
            "owner": owner, "due_at": earlier, "version": _due.c.version + 1, "claimed_by": None,
            "claimed_until": 0.0}))
        if at <= now:
            _notify(conn, thread_id)

    await db.transact(put)


async def ensure_resume(db: Database, *, thread_id: str, owner: str, at: float) -> bool:
    """Start-up: a resume for a pending approval made before these rows existed; never touches a row
    that is there (a peer may hold its claim)."""

    def put(conn: Connection) -> bool:
        stmt = _upsert(conn, _due).values(thread_id=thread_id, owner=owner, due_at=at, version=secrets.randbits(31))
        return conn.execute(stmt.on_conflict_do_nothing(index_elements=["thread_id"]).returning(_due.c.version)
                            ).first() is not None

    return await db.transact(put)


async def cancel_resume(db: Database, *, thread_id: str) -> None:
    await db.transact(lambda c: c.execute(delete(_due).where(_due.c.thread_id == thread_id)))


@dataclass(frozen=True)
class DueResume:
    thread_id: str
    owner: str
    due_at: float
    version: int
    watcher: str | None  # the live process watching the thread, if any


async def due_resumes(db: Database, *, now: float, alive_since: float, limit: int = 100) -> list[DueResume]:
    """Unclaimed (or abandoned) resumes due by `now`, with the live process that watches each thread."""
    live_watcher = select(_watch.c.process_id).where(_watch.c.thread_id == _due.c.thread_id,
                                                     _watch.c.process_id.in_(_alive(alive_since))
                                                     ).scalar_subquery()
    stmt = (select(_due.c.thread_id, _due.c.owner, _due.c.due_at, _due.c.version, live_watcher.label("watcher"))
            .where(_due.c.due_at <= now, or_(_due.c.claimed_by.is_(None), _due.c.claimed_until < now))
            .order_by(_due.c.due_at).limit(limit))
    return await db.query(lambda conn: [DueResume(r.thread_id, r.owner, float(r.due_at), int(r.version), r.watcher)
                                        for r in conn.execute(stmt)])


async def next_due_at(db: Database) -> float | None:
    stmt = select(_due.c.due_at).where(_due.c.claimed_by.is_(None)).order_by(_due.c.due_at).limit(1)
    return await db.query(lambda conn: conn.execute(stmt).scalar_one_or_none())


async def claim_resume(db: Database, *, thread_id: str, version: int, process_id: str, now: float,
                       hold_s: float) -> bool:
    """Exactly one process gets True for one version of a due resume."""
    stmt = update(_due).where(_due.c.thread_id == thread_id, _due.c.version == version, _due.c.due_at <= now,
                              or_(_due.c.claimed_by.is_(None), _due.c.claimed_until < now)
                              ).values(claimed_by=process_id, claimed_until=now + hold_s)
    return await db.transact(lambda c: bool(c.execute(stmt).rowcount))


async def finish_resume(db: Database, *, thread_id: str, version: int) -> None:
    """Done with this version; a request made meanwhile (a newer version) stays."""
    stmt = delete(_due).where(and_(_due.c.thread_id == thread_id, _due.c.version == version))
    await db.transact(lambda c: c.execute(stmt))
