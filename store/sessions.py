"""Session revocation: per user, "tokens issued at or before T are no longer valid"."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from store.db import Database
from store.door_tables import SESSION_CUTOFFS
from store.models import USERS

_c, _users = SESSION_CUTOFFS, USERS


async def revoke_sessions(db: Database, *, name: str, at: float) -> None:
    """Every token of `name` issued at or before `at` stops working (the cut-off only ever moves forward)."""
    def work(conn: Connection) -> None:
        row = conn.execute(select(_c.c.revoked_before).where(_c.c.user_name == name)).first()
        if row is None:
            conn.execute(insert(_c).values(user_name=name, revoked_before=at))
        elif row.revoked_before < at:
            conn.execute(_c.update().where(_c.c.user_name == name).values(revoked_before=at))

    await db.transact(work)


async def session_valid(db: Database, *, name: str, issued_at: float) -> bool:
    """A token of `name` issued at `issued_at` is valid: the user exists and it came after any cut-off."""
    stmt = (select(_users.c.id, _c.c.revoked_before)
            .select_from(_users.outerjoin(_c, _c.c.user_name == _users.c.name))
            .where(_users.c.name == name))
    row = await db.query(lambda conn: conn.execute(stmt).first())
    return row is not None and (row.revoked_before is None or issued_at > row.revoked_before)


async def cutoffs_since(db: Database, *, since: float) -> list[tuple[str, float]]:
    """(user, cut-off) for every cut-off moved at or after `since`: whose open sockets to close."""
    stmt = select(_c.c.user_name, _c.c.revoked_before).where(_c.c.revoked_before >= since)
    rows = await db.query(lambda conn: conn.execute(stmt).all())
    return [(row.user_name, float(row.revoked_before)) for row in rows]
