"""Engines for one SQLite file: a single serialised writer (BEGIN IMMEDIATE) and reader pools.
On PostgreSQL one async engine, and every write transaction holds one advisory lock: the same one-writer rule.

Why separate engines: SQLite allows one writer at a time; funnelling writes through one connection
avoids "database is locked" storms (p99 844 ms → 96 ms measured here), while WAL lets reads proceed.
Writes are functions of a connection (`transact`), so a transaction is one unit of work for the writer.
BEGIN IMMEDIATE takes the write lock up front, so read-modify-write (budget reservations) never
hits SQLITE_BUSY half-way through a transaction. The reads every turn makes are functions of a connection
too (`query`): one hand-off to a reader thread each, instead of one per statement through aiosqlite (`read()`,
kept for the rest; the app's CPU per turn −11 % at 10 sessions, docs/performance.md §10).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from store import schema, tables  # noqa: F401  (tables: every table on SQLModel.metadata)
from store.filemodes import create_private_file, secure_data_dir
from store.limits import StoreLimits

BUSY_TIMEOUT_MS = 10_000
# PostgreSQL: every write transaction first takes this transaction-scoped advisory lock, so writes are
# serialised across every process exactly as SQLite's BEGIN IMMEDIATE serialises them (docs/budgets.md says why).
WRITE_LOCK_KEY = 0x7011_6A7F
# Readers: a FIXED pool, no overflow. With overflow (4 + 4) every burst above 4 concurrent reads opened and closed
# connections (on SQLite each one an aiosqlite thread plus the connect pragmas; 60+ threads came and went in 10 s
# at 50 sessions): that churn grew with load. A ninth concurrent read waits for a connection instead (reads are
# short: none holds its connection across anything but SQL).
READER_POOL_SIZE = 8
PG_POOL_SIZE = 10  # PostgreSQL: readers and the one queued writer share it; a new backend is a fork there
T = TypeVar("T")


def database_url(data_dir: Path) -> str:
    """`TOLLGATE_DATABASE_URL` wins. Not the unprefixed name: chainlit switches to its own Postgres layer
    when it sees that one."""
    return os.environ.get("TOLLGATE_DATABASE_URL") or default_url(data_dir)


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'tollgate.db'}"


def _sqlite_pragmas(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Autocommit at the driver so SQLAlchemy's "begin" event decides how transactions start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.limits = StoreLimits()  # per-user limits, set from the settings by the app
        # Reservation keys start with the id of the process that made them, so a sweeper can close exactly
        # the reservations of a process known dead (store/cluster.py); "" outside an app process.
        self.key_prefix = ""
        self._writer: Engine | None = None
        self._write_conn: Connection | None = None  # only touched on the writer thread
        self._write_thread: ThreadPoolExecutor | None = None
        self._query_engine: Engine | None = None  # SQLite: `query` reads, on their own threads
        self._query_threads: ThreadPoolExecutor | None = None
        self._query_local = threading.local()  # each reader thread keeps one connection
        self._query_conns: list[Connection] = []
        if self.is_sqlite:
            # Writes: a plain (sync) connection owned by one thread; a whole transaction is one hand-off to
            # it (aiosqlite hands off every statement: 3-4x slower per transaction, measured in bench/).
            self._writer = create_engine(make_url(url).set(drivername="sqlite"), pool_size=1, max_overflow=0)
            self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollgate-db-writer")
            self._reader = create_async_engine(url, poolclass=AsyncAdaptedQueuePool, pool_size=READER_POOL_SIZE,
                                               max_overflow=0)
            _sqlite_pragmas(self._writer, immediate=True)
            _sqlite_pragmas(self._reader.sync_engine, immediate=False)
            # `query` reads: like the writer, a whole read is one hand-off to a thread that keeps its connection.
            self._query_engine = create_engine(make_url(url).set(drivername="sqlite"), pool_size=READER_POOL_SIZE,
                                               max_overflow=0)
            self._query_threads = ThreadPoolExecutor(max_workers=READER_POOL_SIZE,
                                                     thread_name_prefix="tollgate-db-reader")
            _sqlite_pragmas(self._query_engine, immediate=False)
        else:  # PostgreSQL: one async engine does both; writes queue here first (see transact)
            self._reader = create_async_engine(url, pool_size=PG_POOL_SIZE, max_overflow=0)
            self._pg_write_queue = asyncio.Lock()

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> Database:
        secure_data_dir(data_dir)
        url = database_url(data_dir)
        if url == default_url(data_dir):
            create_private_file(data_dir / "tollgate.db")
        return cls(url)

    async def upgrade_schema(self) -> schema.SchemaUpgrade:
        """Create the schema or bring it to the newest revision (store/migrations/), in one transaction.
        Raises schema.SchemaError (and changes nothing) for a schema made by a newer Tollgate or one it
        does not recognise."""
        return await self.transact(schema.upgrade)

    async def create_schema(self) -> schema.SchemaUpgrade:
        """The name callers used before migrations: the same as upgrade_schema."""
        return await self.upgrade_schema()

    async def schema_status(self) -> schema.SchemaStatus:
        async with self.read() as conn:
            return await conn.run_sync(schema.status)

    async def transact(self, work: Callable[[Connection], T]) -> T:
        """One write transaction: `work` runs with a (sync) connection, committed when it returns, rolled
        back if it raises. Keep it to SQL: on SQLite it runs on the writer thread."""
        if self._writer is None:
            # Queue in-process first (like SQLite's one writer thread): waiting writers hold no pooled
            # connection, so 200 sessions do not exhaust the pool (they timed out after 30 s without this).
            async with self._pg_write_queue, self._reader.begin() as conn:
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
                return await conn.run_sync(work)
        assert self._write_thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._write_thread, self._run, work)

    def _run(self, work: Callable[[Connection], T]) -> T:
        # The writer keeps its one connection checked out: a pool check-out and reset per transaction was
        # ~15 % of the writer thread's time (bench/persistence.py). An invalidated connection reconnects.
        assert self._writer is not None
        if self._write_conn is None:
            self._write_conn = self._writer.connect()
        with self._write_conn.begin():
            return work(self._write_conn)

    def _close_writer(self) -> None:
        assert self._writer is not None
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None
        self._writer.dispose()

    async def query(self, work: Callable[[Connection], T]) -> T:
        """One read: `work` runs with a (sync) connection inside one transaction, so it sees one snapshot.
        Keep it to SQL. On SQLite the whole read is one hand-off to a reader thread; through `read()` each
        statement, each fetch and the transaction's begin and end are hand-offs to aiosqlite's thread (~10 a
        read, each a wake-up of the event loop: the hot reads of a turn go through here)."""
        if self._query_threads is None:  # PostgreSQL: the async engine's greenlet runs it, one connection
            async with self._reader.connect() as conn:
                return await conn.run_sync(work)
        return await asyncio.get_running_loop().run_in_executor(self._query_threads, self._run_query, work)

    def _run_query(self, work: Callable[[Connection], T]) -> T:
        conn: Connection | None = getattr(self._query_local, "conn", None)
        if conn is None:
            assert self._query_engine is not None
            conn = self._query_local.conn = self._query_engine.connect()
            self._query_conns.append(conn)
        with conn.begin():
            return work(conn)

    @property
    def reader_engine(self) -> AsyncEngine:
        """The engine behind `read()` (on PostgreSQL also behind `transact`): for pool events and status."""
        return self._reader

    @property
    def read_engines(self) -> list[Engine]:
        """The engines reads run on (`read()` and `query`): for statement and connection counts in tests."""
        return [self._reader.sync_engine] + ([self._query_engine] if self._query_engine is not None else [])

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as conn:
            yield conn

    async def integrity_ok(self) -> bool:
        """SQLite: PRAGMA integrity_check. PostgreSQL: amcheck over every table and index (store/integrity.py
        says why that and nothing on start-up)."""
        if not self.is_sqlite:
            from store import integrity  # it names Database

            return await integrity.postgres_ok(self)
        async with self.read() as conn:
            result = await conn.exec_driver_sql("PRAGMA integrity_check")
            return bool(result.scalar_one() == "ok")

    async def close(self) -> None:
        if self._writer is not None and self._write_thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._write_thread, self._close_writer)
            self._write_thread.shutdown(wait=True)
        if self._query_threads is not None and self._query_engine is not None:
            self._query_threads.shutdown(wait=True)  # no read runs any more: their connections can be closed here
            for conn in self._query_conns:
                conn.close()
            self._query_conns.clear()
            self._query_engine.dispose()
        await self._reader.dispose()
