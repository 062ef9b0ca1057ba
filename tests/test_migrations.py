"""Upgrading a database made before migrations (today's `create_all`), on SQLite and on PostgreSQL: every row
survives, pending approvals can still be decided and run once, search still finds old messages; a schema
from a newer Tollgate, or one that is not the baseline, is refused and left untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, inspect, select, text

from agent.config import Settings
from store import approvals as approval_store
from store import logins as login_store
from store import margins as margin_store
from store import schema, summaries
from store import sessions as session_store
from store import steps as step_store
from store import threads as thread_store
from store import usage as usage_store
from store import users as user_store
from store.db import Database
from store.usage import TokenUsage
from tests.pg_cluster import PgCluster
from ui.runtime import build_runtime

pytestmark = pytest.mark.both_backends
LEGACY = Path(__file__).parent / "data"


def _legacy_statements(dialect: str) -> list[str]:
    """The DDL main's create_all ran before migrations (frozen in tests/data/), one statement each."""
    sql = (LEGACY / f"legacy_schema_{dialect}.sql").read_text()
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip()]


@pytest.fixture
async def legacy_db(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """An empty database given today's pre-migration schema (no alembic_version), not yet upgraded."""
    if db_backend == "sqlite":
        database = Database.for_data_dir(tmp_path / "data")
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        name = f"legacy_{abs(hash(request.node.nodeid))}"
        cluster.create_database(name)
        request.addfinalizer(lambda: cluster.drop_database(name))
        database = Database(cluster.url(name))
    statements = _legacy_statements("sqlite" if database.is_sqlite else "postgresql")

    def create(conn: Connection) -> None:
        for statement in statements:
            conn.exec_driver_sql(statement)

    await database.transact(create)
    yield database
    await database.close()


async def _fill(db: Database) -> dict[str, Any]:
    """Realistic rows through the store itself: what a used data dir holds."""
    for name, role in (("alice", "user"), ("bob", "user"), ("olga", "operator")):
        await user_store.add_user(db, name=name, password=f"orchard-apple-{name[0]}9", role=role)
    t = await thread_store.create_thread(db, owner="alice", title="groceries")
    gone = await thread_store.create_thread(db, owner="bob", title="old plans")
    for i, words in enumerate(["Do we need oat milk?", "Yes, two litres of oat milk."]):
        await thread_store.append_message(db, owner="alice", thread_id=t.id, role=("user", "assistant")[i % 2],
                                          content=[{"type": "text", "text": words}])
    await thread_store.keep_partial(db, owner="alice", thread_id=t.id, text="half an ans")
    await thread_store.delete_thread(db, owner="bob", thread_id=gone.id)
    common = {"owner": "alice", "thread_id": t.id, "risk": "", "untrusted_sources": [], "timeout_s": 3600}
    pending = await approval_store.request_approval(db, tool_use_id="toolu_1", tool="write_file",
                                                    args={"path": "a.txt", "content": "x"}, args_digest="d1",
                                                    route="user", **common)
    to_operator = await approval_store.request_approval(db, tool_use_id="toolu_2", tool="delete_file",
                                                        args={"path": "b.txt"}, args_digest="d2", route="operator",
                                                        **common)
    done = await approval_store.request_approval(db, tool_use_id="toolu_3", tool="write_file",
                                                 args={"path": "c.txt", "content": "y"}, args_digest="d3",
                                                 route="user", **common)
    await approval_store.decide(db, approval_id=done.id, decision="approved", decided_by="alice", via="chat")
    assert await approval_store.claim_execution(db, approval_id=done.id, args_digest="d3")
    await approval_store.start_tool_call(db, thread_id=t.id, tool_use_id="toolu_3", tool="write_file",
                                         args={"path": "c.txt", "content": "y"})
    await approval_store.finish_tool_call(db, thread_id=t.id, tool_use_id="toolu_3", output="wrote c.txt",
                                          is_error=False, duration_ms=3.0)
    await approval_store.set_always_approve(db, owner="alice", thread_id=t.id, tool="write_file", on=True)
    key = await usage_store.reserve(db, user="alice", thread_id=t.id, turn_id="turn1", model="claude-x",
                                    purpose="chat", amount_nanousd=5_000, tokens=100, limits=[])
    await usage_store.settle(db, key=key, usage=TokenUsage(input_tokens=10, output_tokens=20), cost_nanousd=1_234)
    await usage_store.reserve(db, user="alice", thread_id=t.id, turn_id="turn2", model="claude-x", purpose="chat",
                              amount_nanousd=7_000, tokens=100, limits=[])  # still open
    await usage_store.set_budget(db, user="alice", daily_nanousd=1_000_000, monthly_nanousd=None)
    await summaries.save(db, thread_id=t.id, covers_to_seq=1, messages=2, text="They talked of oat milk.",
                         tokens=9, model="claude-x")
    await step_store.upsert_step(db, owner="alice", thread_id=t.id, step_id="step-1",
                                 values={"name": "assistant", "type": "assistant_message", "output": "hello"})
    await session_store.revoke_sessions(db, name="bob", at=1_700_000_000.0)
    await login_store.record_failure(db, account="alice", address="10.0.0.9", at=1_700_000_100.0,
                                     forget_before=0.0)
    await margin_store.record_overrun(db, user="alice", excess_nanousd=50, factor_milli=1200)
    return {"thread": t.id, "pending": pending.id, "to_operator": to_operator.id, "done": done.id}


async def _all_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    def read(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
        return {table: sorted((tuple(r) for r in conn.execute(text(f'SELECT * FROM "{table}"'))), key=repr)
                for table in sorted(schema.BASELINE_TABLES)}

    return await db.transact(read)


async def test_a_pre_migration_database_is_adopted_and_every_row_survives(legacy_db: Database) -> None:
    db = legacy_db
    ids = await _fill(db)
    before = await _all_rows(db)
    assert all(before[t] for t in schema.BASELINE_TABLES - {"purges"}), "every table holds a row"
    assert (await db.schema_status()).kind == "unversioned"

    done = await db.upgrade_schema()

    assert done.adopted and done.from_revision is None and done.to_revision == schema.head_revision()
    assert (await db.schema_status()).kind == "current"
    assert await _all_rows(db) == before
    # the pending approvals still work: one decided by its user and run once, one by the operator
    pending = await approval_store.pending_approvals(db, owner="alice")
    assert {a.id for a in pending} == {ids["pending"], ids["to_operator"]}
    approved = await approval_store.decide(db, approval_id=ids["pending"], decision="approved", decided_by="alice",
                                           via="chat")
    assert approved.status == "approved"
    assert await approval_store.claim_execution(db, approval_id=ids["pending"], args_digest="d1")
    assert not await approval_store.claim_execution(db, approval_id=ids["pending"], args_digest="d1")
    rejected = await approval_store.decide(db, approval_id=ids["to_operator"], decision="rejected",
                                           decided_by="olga", via="console", as_operator=True)
    assert rejected.status == "rejected"
    # old messages are still found, new ones too; sequence numbers go on where they were
    assert {t.id for t in await thread_store.list_threads(db, owner="alice", search="litres")} == {ids["thread"]}
    seq = await thread_store.append_message(db, owner="alice", thread_id=ids["thread"], role="user",
                                            content=[{"type": "text", "text": "and walnuts"}])
    assert seq == 3
    assert {t.id for t in await thread_store.list_threads(db, owner="alice", search="walnut")} == {ids["thread"]}
    # the open reservation and the budget still count
    assert await usage_store.get_budget(db, user="alice") == (1_000_000, None)
    assert await user_store.authenticate(db, name="alice", password="orchard-apple-a9") is not None
    # upgrading again is a no-op
    again = await db.upgrade_schema()
    assert not again.adopted and again.from_revision == again.to_revision


async def test_a_schema_from_a_newer_tollgate_is_refused_and_left_alone(db: Database) -> None:
    t = await thread_store.create_thread(db, owner="alice", title="kept")
    await db.transact(lambda conn: conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'")))
    with pytest.raises(schema.SchemaTooNew, match=r"9999_future.*newer Tollgate"):
        await db.upgrade_schema()
    assert (await db.schema_status()).kind == "newer"
    assert (await thread_store.get_thread(db, owner="alice", thread_id=t.id)).title == "kept"


async def test_an_unversioned_database_that_is_not_the_baseline_is_refused(legacy_db: Database) -> None:
    db = legacy_db
    await db.transact(lambda conn: conn.exec_driver_sql("ALTER TABLE approvals ADD COLUMN surprise INTEGER"))
    with pytest.raises(schema.SchemaUnrecognised, match=r"approvals.*surprise"):
        await db.upgrade_schema()

    def tables(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names())

    assert "alembic_version" not in await db.transact(tables)  # nothing was stamped


async def test_the_first_release_unique_tool_use_id_is_not_mistaken_for_the_baseline(legacy_db: Database) -> None:
    """The constraint that changed since the first release (tool_use ids were unique across threads)."""
    db = legacy_db
    await db.transact(lambda conn: conn.exec_driver_sql("CREATE UNIQUE INDEX old_tool_use ON approvals (tool_use_id)"))
    with pytest.raises(schema.SchemaUnrecognised, match="unique keys"):
        await db.upgrade_schema()


async def test_the_models_and_the_migrations_agree(db: Database) -> None:
    """Every schema change comes as a migration: head must make exactly the tables the models declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": not db.is_sqlite,
                                                         "include_object": schema.include_object})
        return list(compare_metadata(context, SQLModel.metadata))

    assert await db.transact(diff) == []


def test_the_baseline_tables_are_what_the_baseline_revision_makes() -> None:
    assert set(schema._baseline()) == schema.BASELINE_TABLES


async def test_the_app_does_not_start_on_a_newer_schema(tmp_path: Path, db_backend: str) -> None:
    if db_backend != "sqlite":
        pytest.skip("the start-up path is the same on both; the refusal itself is tested on both above")
    data_dir = tmp_path / "data"
    db = Database.for_data_dir(data_dir)
    await db.upgrade_schema()
    await db.transact(lambda conn: conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'")))
    await db.close()
    with pytest.raises(schema.SchemaTooNew):
        await build_runtime(Settings(data_dir=data_dir))


def test_cli_db_current_and_upgrade(tmp_path: Path, db_backend: str) -> None:
    if db_backend != "sqlite":
        pytest.skip("the CLI path is the same on both")
    env = {"TOLLGATE_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}

    def tollgate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "import sys, cli; sys.exit(cli.main())", *args],
                              capture_output=True, text=True, env=env, check=False, cwd=Path(__file__).parent.parent)

    status = json.loads(tollgate("db", "current", "--json").stdout)
    assert status == {"revision": None, "head": schema.head_revision(), "status": "empty"}
    assert "to " + schema.head_revision() in tollgate("db", "upgrade").stdout
    assert json.loads(tollgate("db", "current", "--json").stdout)["status"] == "current"
    engine_url = f"sqlite:///{tmp_path / 'data' / 'tollgate.db'}"
    from sqlalchemy import create_engine
    engine = create_engine(engine_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        assert conn.execute(select(text("count(*)")).select_from(text("users"))).scalar_one() == 0
    engine.dispose()
    refused = tollgate("users", "list")
    assert refused.returncode == 3 and "newer Tollgate" in refused.stderr
