"""Reservation overruns: calls billed above what they reserved, and the estimate margin they led to.

A reservation's worst case rests on a prompt estimate; when the API bills more than the estimate allowed,
the call is settled at its real cost (spend is never hidden), the overrun is counted here per user for
operators, and that user's later estimates are scaled up by the observed ratio (bounded)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from store.db import Database
from store.models import ESTIMATE_MARGINS, USERS

_m = ESTIMATE_MARGINS


@dataclass(frozen=True)
class EstimateMargin:
    overruns: int = 0
    overrun_nanousd: int = 0
    factor_milli: int = 1000


async def margin_for(db: Database, *, user: str) -> EstimateMargin:
    stmt = (select(_m.c.overruns, _m.c.overrun_nanousd, _m.c.factor_milli)
            .join(USERS, USERS.c.id == _m.c.user_id).where(USERS.c.name == user))
    row = await db.query(lambda conn: conn.execute(stmt).first())
    return EstimateMargin(row.overruns, row.overrun_nanousd, row.factor_milli) if row else EstimateMargin()


async def record_overrun(db: Database, *, user: str, excess_nanousd: int, factor_milli: int,
                         now: float | None = None) -> EstimateMargin:
    """Count one overrun and raise (never lower) the user's estimate factor; returns the row as stored."""
    now = time.time() if now is None else now

    def put(conn: Connection) -> EstimateMargin:
        uid = conn.execute(select(USERS.c.id).where(USERS.c.name == user)).scalar_one_or_none()
        if uid is None:
            raise LookupError(f"no user {user!r}")
        row = conn.execute(select(_m.c.overruns, _m.c.overrun_nanousd, _m.c.factor_milli)
                           .where(_m.c.user_id == uid)).first()
        if row is None:
            new = EstimateMargin(1, excess_nanousd, max(factor_milli, 1000))
            conn.execute(insert(_m).values(user_id=uid, overruns=new.overruns, overrun_nanousd=new.overrun_nanousd,
                                           factor_milli=new.factor_milli, updated_at=now))
        else:
            new = EstimateMargin(row.overruns + 1, row.overrun_nanousd + excess_nanousd,
                                 max(row.factor_milli, factor_milli))
            conn.execute(update(_m).where(_m.c.user_id == uid).values(
                overruns=new.overruns, overrun_nanousd=new.overrun_nanousd, factor_milli=new.factor_milli,
                updated_at=now))
        return new

    return await db.transact(put)
