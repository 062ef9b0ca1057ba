"""Failed logins, counted per account and per client address over a sliding window (shared by every
process that uses this database)."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, insert, select

from store.db import Database
from store.door_tables import LOGIN_FAILURES

_f = LOGIN_FAILURES
MAX_KEY = 200  # an account name or address longer than this is cut (no such user exists anyway)


async def failures_since(db: Database, *, account: str, address: str, since: float) -> tuple[int, int]:
    """(failures for this account, failures from this address) at or after `since`."""
    async with db.read() as conn:
        by_account = (await conn.execute(select(func.count()).select_from(_f).where(
            _f.c.account == account[:MAX_KEY], _f.c.at >= since))).scalar_one()
        by_address = (await conn.execute(select(func.count()).select_from(_f).where(
            _f.c.address == address[:MAX_KEY], _f.c.at >= since))).scalar_one()
    return int(by_account), int(by_address)


async def record_failure(db: Database, *, account: str, address: str, at: float, forget_before: float) -> None:
    """Count one failure; rows older than `forget_before` (out of every window) go in the same transaction."""
    def work(conn: Connection) -> None:
        conn.execute(delete(_f).where(_f.c.at < forget_before))
        conn.execute(insert(_f).values(account=account[:MAX_KEY], address=address[:MAX_KEY], at=at))

    await db.transact(work)
