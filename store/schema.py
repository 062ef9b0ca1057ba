"""Schema revisions (Alembic, store/migrations/): upgrade to head on start, adopt a database made by the old
`create_all`, and refuse one made by a newer Tollgate.

Every step runs inside the caller's transaction on one connection (Database.transact): an upgrade is applied
whole or not at all (SQLite and PostgreSQL both have transactional DDL). On PostgreSQL a transaction-scoped
advisory lock makes processes that start together upgrade one after the other.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, create_engine, inspect

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BASELINE = "0001_baseline"
UPGRADE_LOCK_KEY = 0x7011_6A7E  # pg_advisory_xact_lock key: one schema upgrade at a time per database

# The tables the baseline made (frozen, like the baseline): one of them present without a revision = unversioned.
BASELINE_TABLES = frozenset({
    "always_approve", "approvals", "budgets", "context_summaries", "estimate_margins", "login_failures", "messages",
    "model_calls", "purges", "session_cutoffs", "thread_deletions", "threads", "tool_calls", "ui_steps", "users"})

SchemaStatusKind = Literal["empty", "unversioned", "behind", "current", "newer"]


class SchemaError(RuntimeError):
    """The database's schema is not one this Tollgate can run on; the message says what to do."""


class SchemaTooNew(SchemaError):
    pass


class SchemaUnrecognised(SchemaError):
    pass


@dataclass(frozen=True)
class SchemaStatus:
    revision: str | None  # what the database says (None: no alembic_version table or no row)
    head: str  # the newest revision this Tollgate knows
    kind: SchemaStatusKind


@dataclass(frozen=True)
class SchemaUpgrade:
    from_revision: str | None
    to_revision: str
    adopted: bool  # a pre-migration database was checked against the baseline and stamped


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Autogenerate leaves alone what the migrations make by hand: the search indexes (SQLite's FTS5 table and
    its shadow tables, PostgreSQL's expression index)."""
    if type_ == "table" and name is not None and name.startswith("message_search"):
        return False
    return not (type_ == "index" and name == "ix_messages_search")


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config)


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None, "store/migrations has more than one head: merge them"
    return head


def _known(revision: str) -> bool:
    try:
        return _script().get_revision(revision) is not None
    except CommandError:
        return False


def status(conn: Connection) -> SchemaStatus:
    revision = MigrationContext.configure(conn).get_current_revision()
    head = head_revision()
    kind: SchemaStatusKind
    if revision is None:
        kind = "unversioned" if BASELINE_TABLES & set(inspect(conn).get_table_names()) else "empty"
    elif not _known(revision):
        kind = "newer"
    else:
        kind = "current" if revision == head else "behind"
    return SchemaStatus(revision=revision, head=head, kind=kind)


def upgrade(conn: Connection) -> SchemaUpgrade:
    """Bring the database to head. Raises SchemaTooNew / SchemaUnrecognised and changes nothing then."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({UPGRADE_LOCK_KEY})")
    before = status(conn)
    if before.kind == "newer":
        raise SchemaTooNew(
            f"the database schema is at revision {before.revision!r}, which this Tollgate does not know (it knows "
            f"up to {before.head!r}): a newer Tollgate upgraded it. Run that version, or restore a backup taken "
            "before the upgrade. Nothing was changed.")
    adopted = False
    if before.kind == "unversioned":
        if problems := baseline_differences(conn):
            raise SchemaUnrecognised(
                "the database has Tollgate tables but no schema revision, and they differ from the baseline "
                f"({BASELINE}): " + "; ".join(problems) + ". Nothing was changed.")
        if conn.dialect.name == "sqlite":  # the index may predate nothing but the tables: make sure it is there
            _baseline_module().create_sqlite_search(conn)
        command.stamp(_config(conn), BASELINE)
        adopted = True
    if before.kind != "current":
        command.upgrade(_config(conn), "head")
    return SchemaUpgrade(from_revision=before.revision, to_revision=before.head, adopted=adopted)


def _baseline_module() -> ModuleType:
    return importlib.import_module(f"store.migrations.versions.{BASELINE}")


Signature = dict[str, tuple[frozenset[str], frozenset[frozenset[str]]]]  # table: (columns, unique column sets)


def _signature(conn: Connection, tables: set[str]) -> Signature:
    inspector = inspect(conn)
    found = set(inspector.get_table_names())
    result: Signature = {}
    for table in sorted(tables & found):
        columns = frozenset(c["name"] for c in inspector.get_columns(table))
        uniques = {frozenset(u["column_names"]) for u in inspector.get_unique_constraints(table)}
        uniques |= {frozenset(c for c in i["column_names"] if c) for i in inspector.get_indexes(table) if i["unique"]}
        result[table] = (columns, frozenset(uniques))
    return result


_baseline_signature: Signature | None = None


def _baseline() -> Signature:
    """The baseline's tables as the baseline revision makes them (built once, in memory)."""
    global _baseline_signature
    if _baseline_signature is None:
        engine = create_engine("sqlite://")
        with engine.begin() as conn:
            command.upgrade(_config(conn), BASELINE)
            names = set(inspect(conn).get_table_names()) - {"alembic_version"}
            _baseline_signature = _signature(conn, {n for n in names if not n.startswith("message_search")})
        engine.dispose()
    return _baseline_signature


def baseline_differences(conn: Connection) -> list[str]:
    """What keeps an unversioned database from being the baseline (empty: it is the baseline)."""
    expected = _baseline()
    found = _signature(conn, set(expected))
    problems = [f"table {t} is missing" for t in sorted(set(expected) - set(found))]
    for table, (columns, uniques) in found.items():
        want_columns, want_uniques = expected[table]
        if columns != want_columns:
            problems.append(f"table {table} has columns {sorted(columns - want_columns)} it should not "
                            f"and lacks {sorted(want_columns - columns)}")
        if uniques != want_uniques:
            problems.append(f"table {table} has unique keys {sorted(sorted(u) for u in uniques)}, "
                            f"the baseline {sorted(sorted(u) for u in want_uniques)}")
    return problems
