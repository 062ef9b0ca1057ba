"""A database's structural integrity check (`Database.integrity_ok`).

SQLite: `PRAGMA integrity_check` (store/db.py): the file is ours, written by this process, and a crash
mid-write is exactly what its check is for (tests/e2e/test_crash.py, bench/crash_loop.py).

PostgreSQL: a crash needs no check of ours: the server replays its write-ahead log at start-up, and a
committed transaction is either wholly there or not at all. What can still go wrong is storage corruption
(a disk, a filesystem, a bug), which only PostgreSQL's `amcheck` extension sees: every table of this schema
goes through `verify_heapam`, every B-tree index through `bt_index_check` with `heapallindexed` (each
table row is in its indexes). Both take only AccessShareLock: writers go on. amcheck ships with PostgreSQL
(contrib) but a superuser must install it once per database (`CREATE EXTENSION amcheck`); without it the
check cannot say "ok" and raises IntegrityCheckUnavailable instead (fail closed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from store.db import Database


class IntegrityCheckUnavailable(RuntimeError):
    pass


_TABLES = text("SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
               "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm', 't') ORDER BY 1")
_INDEXES = text("SELECT c.oid::regclass::text AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND am.amname = 'btree' AND i.indisvalid AND i.indisready "
                "ORDER BY 1")


async def postgres_ok(db: Database) -> bool:
    """True when amcheck finds no corruption in any table or B-tree index of the current schema."""
    async with db.read() as conn:
        installed = (await conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'"))).first()
        if installed is None:
            raise IntegrityCheckUnavailable("the PostgreSQL integrity check needs the amcheck extension: a superuser "
                                            "runs CREATE EXTENSION amcheck once in this database")
        try:
            for (table,) in (await conn.execute(_TABLES)).all():
                problems = await conn.execute(text("SELECT count(*) FROM verify_heapam(CAST(:t AS regclass))"),
                                              {"t": table})
                if problems.scalar_one():
                    return False
            for (index,) in (await conn.execute(_INDEXES)).all():
                await conn.execute(text("SELECT bt_index_check(CAST(:i AS regclass), true)"), {"i": index})
        except DBAPIError as e:
            if getattr(e.orig, "sqlstate", "") in ("XX001", "XX002"):  # data_corrupted, index_corrupted
                return False
            raise
        return True
