"""`Database.query`: a whole read as one function of a (sync) connection. On SQLite it is one hand-off to a
reader thread that keeps its connection; through `read()` (aiosqlite) every statement, fetch, begin and end is
a hand-off of its own, each a wake-up of the event loop: the reads every turn makes go through `query`."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from store import threads as thread_store
from store.db import READER_POOL_SIZE, Database
from store.threads import NotFound

pytestmark = pytest.mark.both_backends


async def test_a_turns_message_load_runs_every_statement_on_one_reader_thread(db: Database, db_backend: str) -> None:
    t = await thread_store.create_thread(db, owner="alice")
    await thread_store.append_message(db, owner="alice", thread_id=t.id, role="user", content=[{"type": "text",
                                                                                               "text": "hi"}])
    ran_on: list[str] = []

    def seen(*_args: Any) -> None:
        ran_on.append(threading.current_thread().name)

    for engine in db.read_engines:
        event.listen(engine, "before_cursor_execute", seen)
    [message] = await thread_store.load_messages(db, owner="alice", thread_id=t.id)
    assert message.content == [{"type": "text", "text": "hi"}]
    assert len(ran_on) >= 2  # the ownership check and the messages
    if db_backend == "sqlite":  # one thread of the reader pool, not aiosqlite's per-connection worker
        assert set(ran_on) == {ran_on[0]} and ran_on[0].startswith("tollgate-db-reader"), ran_on
    with pytest.raises(NotFound):  # the ownership check still holds
        await thread_store.load_messages(db, owner="bob", thread_id=t.id)


async def test_a_query_sees_one_snapshot_and_an_error_leaves_its_connection_usable(db: Database,
                                                                                   db_backend: str) -> None:
    if db_backend != "sqlite":
        pytest.skip("on PostgreSQL the work runs on the event loop's thread (a greenlet): it cannot be held here")
    t = await thread_store.create_thread(db, owner="alice")
    inside = asyncio.Event()
    go_on = threading.Event()
    loop = asyncio.get_running_loop()

    def count_twice(conn: Connection) -> tuple[int, int]:
        query = text("SELECT count(*) FROM messages WHERE thread_id = :t")
        first = int(conn.execute(query, {"t": t.id}).scalar_one())
        loop.call_soon_threadsafe(inside.set)
        assert go_on.wait(30)
        return first, int(conn.execute(query, {"t": t.id}).scalar_one())

    reading = asyncio.ensure_future(db.query(count_twice))
    await inside.wait()
    await thread_store.append_message(db, owner="alice", thread_id=t.id, role="user",
                                      content=[{"type": "text", "text": "written meanwhile"}])
    go_on.set()
    first, second = await reading
    assert (first, second) == (0, 0)  # one transaction, one snapshot: the write in between is not seen

    def fails(conn: Connection) -> None:
        conn.execute(text("SELECT no_such_column FROM messages"))

    for _ in range(READER_POOL_SIZE + 1):  # every pooled connection has failed once by now
        with pytest.raises(Exception, match="no_such_column"):
            await db.query(fails)
    assert await db.query(lambda conn: int(conn.execute(text("SELECT 1")).scalar_one())) == 1


async def test_queries_run_side_by_side_up_to_the_pool(db: Database, db_backend: str) -> None:
    if db_backend != "sqlite":
        pytest.skip("the reader threads are SQLite's; PostgreSQL reads share the async engine's pool")
    arrived = threading.Barrier(READER_POOL_SIZE, timeout=30)

    def meet(conn: Connection) -> str:
        arrived.wait()  # only passes if READER_POOL_SIZE reads run at once
        conn.execute(text("SELECT 1"))
        return threading.current_thread().name

    names = await asyncio.gather(*(db.query(meet) for _ in range(READER_POOL_SIZE)))
    assert len(set(names)) == READER_POOL_SIZE
