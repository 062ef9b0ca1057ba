"""What the chat showed (messages, tool steps, cards), for the history view. Never the model's context:
that is rebuilt from `messages`. Scoped by owner like everything else."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from sqlalchemy import Connection, Insert, Update, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from store.db import Database
from store.limits import LimitExceeded
from store.models import THREADS, UI_STEPS
from store.threads import LIVE, NotFound, ensure_in, owned_live, require_owned
from store.users import user_id_of

_FIELDS = ("name", "type", "parent_id", "input", "output", "is_error", "created_at", "start", "end", "show_input",
           "language", "metadata_json")


_STEP_THREAD = select(UI_STEPS.c.thread_id).where(UI_STEPS.c.id == bindparam("p_id"))
_SIZED = ("name", "input", "output", "show_input", "language", "metadata_json")  # what a client can fill


def _check_size(db: Database, values: dict[str, Any], *, from_client: bool) -> None:
    """Before anything is written. A client's step (whatever type it claims; `user_message` always) holds the
    user's message: its text within the message limit, its other fields small. Chainlit's `on_message` run
    step repeats that message as its input: the same limit. Every step within the step limit."""
    limits = db.limits
    sized = {k: v for k in _SIZED if isinstance(v := values.get(k), str)}
    if limits.max_message_chars is not None:
        if from_client or values.get("type") == "user_message":
            text = len(sized.get("output", ""))
            if text > limits.max_message_chars:
                raise LimitExceeded("message_chars", f"Your message is {text:,} characters; the limit is "
                                                     f"{limits.max_message_chars:,}. It was not saved.")
            extra = sum(len(v) for k, v in sized.items() if k != "output")
            if extra > limits.max_client_extra_chars:
                raise LimitExceeded("message_chars", f"Your message's name and metadata are {extra:,} characters; "
                                                     f"the limit is {limits.max_client_extra_chars:,}. "
                                                     "It was not saved.")
        if values.get("type") == "run" and len(sized.get("input", "")) > limits.max_message_chars:
            raise LimitExceeded("run_input", "the on_message step repeats a message over the limit")
    total = sum(len(v) for v in sized.values())
    if limits.max_step_chars is not None and total > limits.max_step_chars:
        raise LimitExceeded("step_chars", f"This step is {total:,} characters; the limit is "
                                          f"{limits.max_step_chars:,}. It was not saved.")


@functools.cache
def _writes(fields: tuple[str, ...], dialect: str) -> tuple[Insert, Update, Insert, Update]:
    """Statements built once per field set (chainlit sends one) and dialect: building them for every step took
    ~7 % of the server's CPU under load (bench/concurrency_server.py, sampled with py-spy).

    The first two carry the ownership check in their WHERE, so the usual write is one statement: a step's first
    write inserts (nothing happens if the step exists or the thread is not the owner's and live), a later one
    updates. The other two are the plain statements of the slow path (a new thread, or a refusal to explain)."""
    binds: dict[str, Any] = {f: bindparam(f"p_{f}") for f in fields}
    columns = ["id", "thread_id", "seq", *fields]
    # Typed binds: in a SELECT list nothing else tells PostgreSQL their types.
    values = [bindparam(f"p_{c}", type_=UI_STEPS.c[c].type) for c in columns]
    owned = select(THREADS.c.id).where(owned_live).exists()
    insert_owned = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(UI_STEPS).from_select(
        columns, select(*values).where(owned)).on_conflict_do_nothing(index_elements=["id"]).returning(UI_STEPS.c.id)
    update_owned = update(UI_STEPS).where(UI_STEPS.c.id == bindparam("p_id"),
                                          UI_STEPS.c.thread_id == bindparam("p_thread_id"), owned).values(**binds)
    return (insert_owned, update_owned,
            insert(UI_STEPS).values(id=bindparam("p_id"), thread_id=bindparam("p_thread_id"),
                                    seq=bindparam("p_seq"), **binds),
            update(UI_STEPS).where(UI_STEPS.c.id == bindparam("p_id")).values(**binds))


async def upsert_step(db: Database, *, owner: str, thread_id: str, step_id: str, values: dict[str, Any],
                      from_client: bool = False, at: float | None = None) -> bool:
    """Create or update a step, creating the owner's thread on first use (chainlit sends steps before
    any thread exists). False, and nothing written, if the thread belongs to someone else or was deleted;
    LimitExceeded, and nothing written, over a size or thread limit.

    `at` is when the step was shown (its place in the history); without it, when it is first written. Writes
    run as concurrent tasks, so the write time alone can swap two steps shown a moment apart."""
    _check_size(db, values, from_client=from_client)
    fields = tuple(k for k in _FIELDS if k in values)
    params = {"p_id": step_id, "p_thread_id": thread_id, "p_owner": owner,
              "p_seq": time.time() if at is None else at, **{f"p_{k}": values[k] for k in fields}}

    def upsert(conn: Connection) -> bool:
        insert_owned, update_owned, create, change = _writes(fields, conn.dialect.name)
        # RETURNING, not rowcount: an INSERT's rowcount is not reliable through SQLAlchemy (-1 on psycopg)
        if conn.execute(insert_owned, params).first() or conn.execute(update_owned, params).rowcount:
            return True
        # A thread not yet created, or a write to refuse (another user's thread or step, a deleted thread).
        if not ensure_in(conn, owner=owner, thread_id=thread_id, max_threads=db.limits.max_threads_per_user):
            return False
        existing = conn.execute(_STEP_THREAD, {"p_id": step_id}).first()
        if existing is None:
            conn.execute(create, params)
        elif existing.thread_id != thread_id:
            raise NotFound("no such step")
        else:
            conn.execute(change, params)
        return True

    return await db.transact(upsert)


async def delete_step(db: Database, *, owner: str, step_id: str) -> None:
    stmt = delete(UI_STEPS).where(
        UI_STEPS.c.id == step_id,
        UI_STEPS.c.thread_id.in_(select(THREADS.c.id).where(THREADS.c.owner_id == user_id_of(owner), LIVE)))
    await db.transact(lambda conn: conn.execute(stmt))


async def list_steps(db: Database, *, owner: str, thread_id: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        await require_owned(conn, owner, thread_id)
        rows = await conn.execute(select(UI_STEPS).where(UI_STEPS.c.thread_id == thread_id).order_by(UI_STEPS.c.seq))
        return [{**dict(r._mapping), "metadata": json.loads(r.metadata_json or "{}")} for r in rows]
