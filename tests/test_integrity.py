"""`Database.integrity_ok` on both backends: SQLite's integrity_check, PostgreSQL's amcheck (store/integrity.py),
which cannot answer "ok" without the extension."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import make_url

from store import integrity
from store import threads as thread_store
from store.db import Database
from store.integrity import IntegrityCheckUnavailable
from store.notify import libpq_url

pytestmark = pytest.mark.both_backends


async def test_a_healthy_database_passes_and_postgresql_without_amcheck_refuses_to_say_ok(db: Database) -> None:
    tid = (await thread_store.create_thread(db, owner="alice")).id
    await thread_store.append_message(db, owner="alice", thread_id=tid, role="user",
                                      content=[{"type": "text", "text": "hello"}])
    if not db.is_sqlite:
        with pytest.raises(IntegrityCheckUnavailable, match="CREATE EXTENSION amcheck"):
            await db.integrity_ok()
        assert make_url(db.url).username == "postgres"  # the test cluster's superuser installs it
        with psycopg.connect(libpq_url(db.url), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION amcheck")
        async with db.read() as conn:  # what it walks: every table and index of the schema, not nothing
            tables = (await conn.execute(integrity._TABLES)).scalars().all()
            indexes = (await conn.execute(integrity._INDEXES)).scalars().all()
        assert {"messages", "approvals", "thread_leases"} <= set(tables) and "messages_pkey" in indexes
    assert await db.integrity_ok()
