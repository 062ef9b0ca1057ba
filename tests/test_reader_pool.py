"""The reader pool keeps its connections under load: bursts of concurrent reads wait for a pooled connection
instead of opening and closing extra ones (issue #18: 60+ reader threads came and went in 10 s at 50 sessions)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event

from store import threads as thread_store
from store.db import PG_POOL_SIZE, READER_POOL_SIZE, Database

pytestmark = pytest.mark.both_backends

BURSTS, CONCURRENT = 5, 40


async def test_concurrent_reads_open_at_most_the_pool_size_of_connections(db: Database, db_backend: str) -> None:
    opened: list[Any] = []
    for engine in db.read_engines:
        event.listen(engine, "connect", lambda dbapi_conn, _record: opened.append(dbapi_conn))
    thread = await thread_store.create_thread(db, owner="alice")

    async def one_read() -> str:
        return (await thread_store.get_thread(db, owner="alice", thread_id=thread.id)).id

    for _ in range(BURSTS):  # load that comes and goes, as turns do
        assert await asyncio.gather(*(one_read() for _ in range(CONCURRENT))) == [thread.id] * CONCURRENT
    bound = READER_POOL_SIZE if db_backend == "sqlite" else PG_POOL_SIZE
    assert 0 < len(opened) <= bound, f"{len(opened)} reader connections opened for {BURSTS} bursts (pool {bound})"
