"""Which model a user wants for new threads, and the model settings each thread was started with.

Two tables of their own (create_all adds tables, never columns). A thread's row is written once, when the
thread starts, and never changed: thinking type and effort are part of the prompt cache's key, so a thread
that switched them mid-way would lose its cache (agent/thread_model.py)."""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlmodel import Field, SQLModel

from store.models import USERS

if TYPE_CHECKING:  # store/db.py imports this module to register its tables
    from store.db import Database


class UserModelPrefRow(SQLModel, table=True):
    """The model and effort a user chose in the chat settings; NULL row: the deployment's defaults."""

    __tablename__ = "user_model_prefs"
    user_id: int = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    model: str
    effort: str
    updated_at: float


class ThreadModelRow(SQLModel, table=True):
    """The model settings a thread was started with; every call of the thread uses them."""

    __tablename__ = "thread_model_settings"
    thread_id: str = Field(foreign_key="threads.id", primary_key=True, ondelete="CASCADE")
    model: str
    effort: str
    thinking: str  # adaptive | between_tools
    display: str  # summarized | omitted
    created_at: float


USER_MODEL_PREFS = cast(Table, UserModelPrefRow.__table__)  # type: ignore[attr-defined]
THREAD_MODEL_SETTINGS = cast(Table, ThreadModelRow.__table__)  # type: ignore[attr-defined]
_prefs, _threads = USER_MODEL_PREFS, THREAD_MODEL_SETTINGS


@dataclass(frozen=True)
class ThreadModelSettings:
    model: str
    effort: str
    thinking: str
    display: str


async def user_pref(db: Database, *, user: str) -> tuple[str, str] | None:
    """(model, effort) the user chose, or None."""
    stmt = (select(_prefs.c.model, _prefs.c.effort).join(USERS, USERS.c.id == _prefs.c.user_id)
            .where(USERS.c.name == user))
    row = await db.query(lambda conn: conn.execute(stmt).first())
    return (row.model, row.effort) if row else None


async def set_user_pref(db: Database, *, user: str, model: str, effort: str, now: float | None = None) -> None:
    at = time.time() if now is None else now

    def put(conn: Connection) -> None:
        uid = conn.execute(select(USERS.c.id).where(USERS.c.name == user)).scalar_one_or_none()
        if uid is None:
            raise LookupError(f"no user {user!r}")
        values = {"model": model, "effort": effort, "updated_at": at}
        if conn.execute(select(_prefs.c.user_id).where(_prefs.c.user_id == uid)).first():
            conn.execute(update(_prefs).where(_prefs.c.user_id == uid).values(**values))
        else:
            conn.execute(insert(_prefs).values(user_id=uid, **values))

    await db.transact(put)


# A thread's row never changes once written (see above), in any process: once seen it is kept here, per database,
# instead of being read for every model call and written-or-read at every turn (2 reads and a write transaction
# a tool turn, measured in bench/concurrency_server.py).
_fixed: weakref.WeakKeyDictionary[Database, dict[str, ThreadModelSettings]] = weakref.WeakKeyDictionary()
_FIXED_KEPT = 10_000


def _remember(db: Database, thread_id: str, settings: ThreadModelSettings) -> ThreadModelSettings:
    kept = _fixed.setdefault(db, {})
    if len(kept) >= _FIXED_KEPT:
        kept.pop(next(iter(kept)))
    kept[thread_id] = settings
    return settings


_SETTINGS_OF = select(_threads.c.model, _threads.c.effort, _threads.c.thinking, _threads.c.display).where(
    _threads.c.thread_id == bindparam("p_thread_id"))


async def thread_settings(db: Database, *, thread_id: str) -> ThreadModelSettings | None:
    if (kept := _fixed.get(db, {}).get(thread_id)) is not None:
        return kept
    async with db.read() as conn:
        row = (await conn.execute(_SETTINGS_OF, {"p_thread_id": thread_id})).first()
    return _remember(db, thread_id, ThreadModelSettings(row.model, row.effort, row.thinking, row.display)) \
        if row else None


async def fix_thread_settings(db: Database, *, thread_id: str, wanted: ThreadModelSettings,
                              now: float | None = None) -> ThreadModelSettings:
    """Store `wanted` as the thread's settings unless it has some already; returns the settings in force."""
    if (kept := _fixed.get(db, {}).get(thread_id)) is not None:
        return kept
    at = time.time() if now is None else now

    def put(conn: Connection) -> ThreadModelSettings:
        row = conn.execute(_SETTINGS_OF, {"p_thread_id": thread_id}).first()
        if row is not None:
            return ThreadModelSettings(row.model, row.effort, row.thinking, row.display)
        conn.execute(insert(_threads).values(thread_id=thread_id, model=wanted.model, effort=wanted.effort,
                                             thinking=wanted.thinking, display=wanted.display, created_at=at))
        return wanted

    return _remember(db, thread_id, await db.transact(put))
