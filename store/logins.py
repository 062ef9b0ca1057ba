"""Failed logins, counted per account and per client address over a sliding window (shared by every
process that uses this database).

An attempt takes its place in the count before the password is checked (`begin_attempt`: count and insert
in one write transaction), and gives it back when the password was right (`forgive`). Counting after the
check let N concurrent wrong passwords all read the same count and all be tried: the limit must hold
across concurrent attempts in one process and across processes."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, insert, select, text

from store.db import Database
from store.door_tables import LOGIN_FAILURES

_f = LOGIN_FAILURES
MAX_KEY = 200  # an account name or address longer than this is cut (no such user exists anyway)
# PostgreSQL: every attempt's count-and-insert holds this transaction lock, so the count cannot be read twice
# at the same value even where writes are not serialised otherwise (SQLite: BEGIN IMMEDIATE does it).
LOGIN_LOCK_KEY = 0x7011_6A80


async def failures_since(db: Database, *, account: str, address: str, since: float) -> tuple[int, int]:
    """(failures for this account, failures from this address) at or after `since`."""
    async with db.read() as conn:
        by_account = (await conn.execute(select(func.count()).select_from(_f).where(
            _f.c.account == account[:MAX_KEY], _f.c.at >= since))).scalar_one()
        by_address = (await conn.execute(select(func.count()).select_from(_f).where(
            _f.c.address == address[:MAX_KEY], _f.c.at >= since))).scalar_one()
    return int(by_account), int(by_address)


async def begin_attempt(db: Database, *, account: str, address: str, at: float, since: float, per_account: int,
                        per_address: int) -> int | None:
    """Count this attempt as a failure unless the account or the address reached its limit since `since`:
    the id of its row (`forgive` it when the password was right), or None when refused by the limits
    (refused attempts are not counted). Rows older than `since` go in the same transaction."""

    def work(conn: Connection) -> int | None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOGIN_LOCK_KEY})
        conn.execute(delete(_f).where(_f.c.at < since))
        by_account = conn.execute(select(func.count()).select_from(_f).where(
            _f.c.account == account[:MAX_KEY], _f.c.at >= since)).scalar_one()
        by_address = conn.execute(select(func.count()).select_from(_f).where(
            _f.c.address == address[:MAX_KEY], _f.c.at >= since)).scalar_one()
        if by_account >= per_account or by_address >= per_address:
            return None
        return int(conn.execute(insert(_f).values(account=account[:MAX_KEY], address=address[:MAX_KEY], at=at)
                                .returning(_f.c.id)).scalar_one())

    return await db.transact(work)


async def forgive(db: Database, *, attempt_id: int) -> None:
    """The attempt `attempt_id` logged in: it was no failure."""
    await db.transact(lambda conn: conn.execute(delete(_f).where(_f.c.id == attempt_id)))


async def record_failure(db: Database, *, account: str, address: str, at: float, forget_before: float) -> None:
    """Count one failure; rows older than `forget_before` (out of every window) go in the same transaction."""
    def work(conn: Connection) -> None:
        conn.execute(delete(_f).where(_f.c.at < forget_before))
        conn.execute(insert(_f).values(account=account[:MAX_KEY], address=address[:MAX_KEY], at=at))

    await db.transact(work)
