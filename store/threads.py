"""Threads and their Messages-API messages. Every read and write is scoped by the owning user."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Boolean, Connection, Float, String, Text, and_, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store import changes
from store.db import Database
from store.fencing import Fence, require_lease
from store.limits import LimitExceeded
from store.models import APPROVALS, MESSAGES, THREAD_DELETIONS, THREADS, USERS
from store.search import thread_matches
from store.users import user_id_of
from store.values import StoredMessage, Thread

_threads = THREADS
_messages = MESSAGES
_users = USERS
_deletions = THREAD_DELETIONS
# A thread its owner has not deleted. Every owner-facing read and write carries it; operators' reads do not.
# correlate_except: the subquery keeps its own thread_deletions even inside a query that outer-joins that table.
LIVE = ~(select(_deletions.c.thread_id).where(_deletions.c.thread_id == _threads.c.id)
         .correlate_except(_deletions).exists())


class NotFound(LookupError):
    """Unknown, or owned by someone else: callers cannot tell which, by design."""


def _thread(row: Any) -> Thread:
    return Thread(id=row.id, owner=row.name, title=row.title, created_at=row.created_at,
                  updated_at=row.updated_at)


_thread_cols = (_threads.c.id, _users.c.name, _threads.c.title, _threads.c.created_at,
                _threads.c.updated_at)


# Hot-path statements, built once with bound parameters (building a statement costs more than running it).
_owned_any = and_(_threads.c.id == bindparam("p_thread_id"), _threads.c.owner_id == select(_users.c.id)
                  .where(_users.c.name == bindparam("p_owner")).scalar_subquery())
# The thread `p_thread_id` is `p_owner`'s and not deleted (store/steps.py's hot statements use it too).
owned_live = and_(_owned_any, LIVE)
# One statement checks ownership, numbers the message and inserts it.
_APPEND = insert(_messages).from_select(
    ["thread_id", "seq", "role", "content_json", "incomplete", "created_at"],
    # Typed binds: in a SELECT list nothing else tells PostgreSQL their types.
    select(bindparam("p_thread_id", type_=String), select(func.coalesce(func.max(_messages.c.seq) + 1, 0))
           .where(_messages.c.thread_id == bindparam("p_thread_id")).scalar_subquery(),
           bindparam("p_role", type_=String), bindparam("p_content_json", type_=Text),
           bindparam("p_incomplete", type_=Boolean), bindparam("p_now", type_=Float))
    .where(select(_threads.c.id).where(owned_live).exists())).returning(_messages.c.seq)
_FINISH = update(_messages).where(
    _messages.c.thread_id == bindparam("p_thread_id"), _messages.c.seq == bindparam("p_seq"),
    _messages.c.incomplete.is_(True), _messages.c.thread_id.in_(select(_threads.c.id).where(owned_live))).values(
    content_json=bindparam("p_new_content"), incomplete=bindparam("p_new_incomplete"))
_TOUCH = update(_threads).where(_threads.c.id == bindparam("p_thread_id")).values(updated_at=bindparam("p_now"))
_OWNED = select(_threads.c.id).where(owned_live)
_OWNED_ANY = select(_threads.c.id).where(_owned_any)  # operators' view: deleted threads too
_LOAD = (select(_messages.c.seq, _messages.c.role, _messages.c.content_json, _messages.c.incomplete,
                _messages.c.created_at)
         .where(_messages.c.thread_id == bindparam("p_thread_id")).order_by(_messages.c.seq))
_OWNER_STATE = (select(_users.c.name, LIVE.label("live")).join(_threads, _users.c.id == _threads.c.owner_id)
                .where(_threads.c.id == bindparam("p_thread_id")))
_LIVE_COUNT = (select(func.count()).select_from(_threads)
               .where(_threads.c.owner_id == bindparam("p_owner_id"), LIVE))


def _check_room(conn: Connection, uid: Any, max_threads: int | None) -> None:
    if max_threads is not None and conn.execute(_LIVE_COUNT, {"p_owner_id": uid}).scalar_one() >= max_threads:
        raise LimitExceeded("threads", f"You have {max_threads:,} chats, the limit: delete one to start another.")


async def create_thread(db: Database, *, owner: str, title: str = "", thread_id: str | None = None) -> Thread:
    now = time.time()
    tid = thread_id or uuid.uuid4().hex

    def create(conn: Connection) -> None:
        uid = conn.execute(select(_users.c.id).where(_users.c.name == owner)).scalar_one_or_none()
        if uid is None:
            raise NotFound(f"no user {owner!r}")
        _check_room(conn, uid, db.limits.max_threads_per_user)
        conn.execute(insert(_threads).values(id=tid, owner_id=uid, title=title[:200], created_at=now, updated_at=now))

    await db.transact(create)
    return Thread(id=tid, owner=owner, title=title[:200], created_at=now, updated_at=now)


async def ensure_thread(db: Database, *, owner: str, thread_id: str) -> bool:
    """Create the thread for `owner` on first use. False if it exists under another owner.

    One write transaction (BEGIN IMMEDIATE), so concurrent first uses cannot both insert. False for a
    thread its owner deleted (it stays deleted); LimitExceeded when the owner holds too many threads."""
    limit = db.limits.max_threads_per_user
    return await db.transact(lambda conn: ensure_in(conn, owner=owner, thread_id=thread_id, max_threads=limit))


def owner_in(conn: Connection, *, thread_id: str) -> str | None:
    """Inside a write transaction: the thread's owner, None if there is no such thread or it was deleted."""
    row = conn.execute(_OWNER_STATE, {"p_thread_id": thread_id}).first()
    return None if row is None or not row.live else str(row.name)


def ensure_in(conn: Connection, *, owner: str, thread_id: str, max_threads: int | None = None) -> bool:
    """`ensure_thread` inside a caller's write transaction."""
    current = conn.execute(_OWNER_STATE, {"p_thread_id": thread_id}).first()
    if current is not None:
        return bool(current.live) and current.name == owner
    uid = conn.execute(select(_users.c.id).where(_users.c.name == owner)).scalar_one_or_none()
    if uid is None:
        return False
    _check_room(conn, uid, max_threads)
    now = time.time()
    conn.execute(insert(_threads).values(id=thread_id, owner_id=uid, title="", created_at=now, updated_at=now))
    return True


async def get_thread(db: Database, *, owner: str, thread_id: str) -> Thread:
    stmt = (select(*_thread_cols).join(_users, _users.c.id == _threads.c.owner_id)
            .where(_threads.c.id == thread_id, _users.c.name == owner, LIVE))
    row = await db.query(lambda conn: conn.execute(stmt).first())
    if row is None:
        raise NotFound("no such thread")
    return _thread(row)


async def list_threads(db: Database, *, owner: str, limit: int = 50, before: float | None = None,
                       search: str | None = None) -> list[Thread]:
    stmt = (select(*_thread_cols).join(_users, _users.c.id == _threads.c.owner_id)
            .where(_users.c.name == owner, LIVE).order_by(_threads.c.updated_at.desc()).limit(limit))
    if before is not None:
        stmt = stmt.where(_threads.c.updated_at < before)
    if search and search.strip():
        stmt = stmt.where(thread_matches(search, owner_id=user_id_of(owner), sqlite=db.is_sqlite))
    async with db.read() as conn:
        return [_thread(r) for r in await conn.execute(stmt)]


async def rename_thread(db: Database, *, owner: str, thread_id: str, title: str) -> None:
    stmt = update(_threads).where(_threads.c.id == thread_id, _threads.c.owner_id == user_id_of(owner), LIVE)
    if not await db.transact(lambda conn: conn.execute(stmt.values(title=title[:200])).rowcount):
        raise NotFound("no such thread")


async def delete_thread(db: Database, *, owner: str, thread_id: str) -> None:
    """The owner's delete: the thread disappears for its owner, its records stay for operators (append-only)
    until a purge past the retention period. Its pending approvals are rejected, so nothing runs later."""
    now = time.time()
    params = {"p_thread_id": thread_id, "p_owner": owner}

    def hide(conn: Connection) -> None:
        if conn.execute(_OWNED, params).first() is None:
            raise NotFound("no such thread")
        conn.execute(insert(_deletions).values(thread_id=thread_id, deleted_at=now, deleted_by=owner))
        conn.execute(update(APPROVALS).where(APPROVALS.c.thread_id == thread_id, APPROVALS.c.status == "pending")
                     .values(status="rejected", decided_at=now, decided_by="system", decided_via="system",
                             reason="the thread was deleted by its owner"))

    await db.transact(hide)
    changes.notify(changes.APPROVALS)  # its pending approvals closed


async def require_owned(conn: AsyncConnection, owner: str, thread_id: str, *, include_deleted: bool = False) -> None:
    """Inside a read: NotFound unless `owner` owns the thread (and has not deleted it, unless `include_deleted`:
    operators' reads)."""
    found = await conn.execute(_OWNED_ANY if include_deleted else _OWNED, {"p_thread_id": thread_id, "p_owner": owner})
    if found.first() is None:
        raise NotFound("no such thread")


async def append_message(db: Database, *, owner: str, thread_id: str, role: str,
                         content: list[dict[str, Any]], incomplete: bool = False, fence: Fence | None = None) -> int:
    """Append one API message; returns its sequence number in the thread. With `fence`, only while that lease
    is the thread's current one (store/fencing.py: LeaseLost otherwise, nothing written)."""
    if role not in ("user", "assistant"):
        raise ValueError(f"bad role {role!r}")
    params = {"p_thread_id": thread_id, "p_owner": owner, "p_role": role, "p_incomplete": incomplete,
              "p_now": time.time(), "p_content_json": json.dumps(content, ensure_ascii=False)}

    def append(conn: Connection) -> Any:
        require_lease(conn, fence)
        seq = conn.execute(_APPEND, params).scalar_one_or_none()
        if seq is None:
            raise NotFound("no such thread")
        conn.execute(_TOUCH, params)
        return seq

    return int(await db.transact(append))


async def keep_partial(db: Database, *, owner: str, thread_id: str, text: str, seq: int | None = None,
                       fence: Fence | None = None) -> int:
    """Store (seq None) or update an answer still streaming, as an incomplete assistant message; its seq.

    Only a message still marked incomplete is updated: a finished one is never overwritten."""
    content = [{"type": "text", "text": text}]
    if seq is None:
        return await append_message(db, owner=owner, thread_id=thread_id, role="assistant", content=content,
                                    incomplete=True, fence=fence)
    await finish_message(db, owner=owner, thread_id=thread_id, seq=seq, content=content, incomplete=True, fence=fence)
    return seq


async def finish_message(db: Database, *, owner: str, thread_id: str, seq: int, content: list[dict[str, Any]],
                         incomplete: bool = False, fence: Fence | None = None) -> None:
    """Replace the content of the incomplete message `seq` (the streamed answer is complete, or cut)."""
    params = {"p_thread_id": thread_id, "p_owner": owner, "p_seq": seq, "p_new_incomplete": incomplete,
              "p_now": time.time(), "p_new_content": json.dumps(content, ensure_ascii=False)}

    def finish(conn: Connection) -> None:
        require_lease(conn, fence)
        if not conn.execute(_FINISH, params).rowcount:
            raise NotFound("no such incomplete message")
        conn.execute(_TOUCH, params)

    await db.transact(finish)


async def load_messages(db: Database, *, owner: str, thread_id: str,
                        include_deleted: bool = False) -> list[StoredMessage]:
    owned = {"p_thread_id": thread_id, "p_owner": owner}

    def read(conn: Connection) -> Sequence[Any]:
        if conn.execute(_OWNED_ANY if include_deleted else _OWNED, owned).first() is None:
            raise NotFound("no such thread")
        return conn.execute(_LOAD, owned).all()

    return [StoredMessage(seq=r.seq, role=r.role, content=json.loads(r.content_json),
                          incomplete=bool(r.incomplete), created_at=r.created_at) for r in await db.query(read)]


async def owner_of(db: Database, *, thread_id: str) -> str | None:
    """Who owns a thread; None if there is none or its owner deleted it (what the owner-facing doors ask)."""
    row = await db.query(lambda conn: conn.execute(_OWNER_STATE, {"p_thread_id": thread_id}).first())
    return None if row is None or not row.live else str(row.name)


async def owner_and_deletion(db: Database, *, thread_id: str) -> tuple[str, float | None] | None:
    """For operators only: a thread's owner and when its owner deleted it (None if not deleted)."""
    async with db.read() as conn:
        row = (await conn.execute(select(_users.c.name, _deletions.c.deleted_at)
                                  .join(_threads, _users.c.id == _threads.c.owner_id)
                                  .outerjoin(_deletions, _deletions.c.thread_id == _threads.c.id)
                                  .where(_threads.c.id == thread_id))).first()
    return None if row is None else (str(row.name), row.deleted_at)
