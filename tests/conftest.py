"""Shared fixtures: a real SQLite file, the real SDK over HTTP against the scripted model server."""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import pytest
from sqlalchemy import create_engine

from agent.approvals import Approved, Decision, Denied
from agent.budget import Budget
from agent.config import Settings
from agent.demo_model import DemoModelServer, DemoSettings, ScriptedBrain
from agent.demo_model.app import add_refusal_listener, remove_refusal_listener
from agent.events import AgentEvent
from agent.loop import Agent, AgentDeps
from agent.model import ModelClient
from agent.pricing import PriceTable
from store import schema
from store import threads as thread_store
from store import users as user_store
from store.db import Database
from store.filemodes import secure_data_dir
from store.values import Approval
from tests.pg_cluster import PgCluster, PostgresMissing
from tools import ToolRegistry, default_registry

FAST = DemoSettings(first_token_delay_s=0.0, tokens_per_second=0.0)


@dataclass
class DemoRefusals:
    """Every 4xx the demo model answered on its own (a request the 5.x API would refuse) during a test.
    A test that provokes one on purpose says so with `expect(pattern)`; any other fails the test."""

    seen: list[tuple[int, str, str]] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, status: int, message: str, path: str) -> None:
        with self.lock:  # the demo server runs in its own thread
            self.seen.append((status, message, path))

    def expect(self, pattern: str) -> None:
        self.expected.append(re.compile(pattern))

    def unexpected(self) -> list[tuple[int, str, str]]:
        with self.lock:
            return [r for r in self.seen if not any(p.search(r[1]) for p in self.expected)]


@pytest.fixture(autouse=True)
def demo_refusals() -> Iterator[DemoRefusals]:
    refusals = DemoRefusals()
    add_refusal_listener(refusals)
    try:
        yield refusals
    finally:
        remove_refusal_listener(refusals)
    if unexpected := refusals.unexpected():
        pytest.fail(f"the demo model refused {len(unexpected)} request(s) this test did not expect: {unexpected}",
                    pytrace=False)


@dataclass
class Recorder:
    """An event sink that keeps everything, for assertions."""

    events: list[AgentEvent] = field(default_factory=list)

    async def __call__(self, event: AgentEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class ScriptedApprover:
    """Decides by tool name; records what it was asked. A missing entry is a test error."""

    decisions: dict[str, Decision | Exception]
    asked: list[Approval] = field(default_factory=list)

    async def decide(self, approval: Approval) -> Decision | None:
        self.asked.append(approval)
        d = self.decisions[approval.tool]
        if isinstance(d, Exception):
            raise d
        return d


APPROVE_ALL = ScriptedApprover({"write_file": Approved(), "delete_file": Approved()})
REJECT_ALL = ScriptedApprover({"write_file": Denied("no thanks"), "delete_file": Denied("no thanks")})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", approval_timeout_s=30)


_sqlite_template: Path | None = None


def sqlite_template() -> Path:
    """A SQLite file migrated to head once per test process; each test database starts as a copy of it
    (running every migration per test would cost ~0.3 s each)."""
    global _sqlite_template
    if _sqlite_template is None:
        path = Path(tempfile.mkdtemp(prefix="tollgate-template-")) / "tollgate.db"
        atexit.register(shutil.rmtree, path.parent, True)
        engine = create_engine(f"sqlite:///{path}")
        with engine.begin() as conn:
            schema.upgrade(conn)
        engine.dispose()
        _sqlite_template = path
    return _sqlite_template


async def open_test_db(data_dir: Path, users: tuple[str, ...] = ("alice", "bob"), *,
                       url: str | None = None) -> Database:
    """A real database with the schema at head and these users (passwords the policy accepts): a SQLite file in
    `data_dir`, or the (already migrated) PostgreSQL database at `url`."""
    if url is None:
        secure_data_dir(data_dir)
        if not (data_dir / "tollgate.db").exists():
            shutil.copyfile(sqlite_template(), data_dir / "tollgate.db")
            os.chmod(data_dir / "tollgate.db", 0o600)
        database = Database.for_data_dir(data_dir)
    else:
        database = Database(url)
    await database.upgrade_schema()
    for i, name in enumerate(users, 1):
        await user_store.add_user(database, name=name, password=f"orchard-apple-{i}")
    return database


# A test module marked `pytestmark = pytest.mark.both_backends` runs every test that uses `db` (or asks for
# `db_backend`) on SQLite and on a throwaway PostgreSQL (tests/pg_cluster.py); other tests run on SQLite.
BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        metafunc.parametrize("db_backend", BACKENDS)


@pytest.fixture
def db_backend() -> str:
    return "sqlite"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL cluster for the whole test session, started on first use."""
    try:
        cluster = PgCluster.start()
    except PostgresMissing as e:
        pytest.fail(str(e), pytrace=False)
    yield cluster
    cluster.stop()


PG_TEMPLATE = "tollgate_template"


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PgCluster) -> str:
    """A database migrated to head once; every test database is a copy of it (CREATE DATABASE ... TEMPLATE)."""
    pg_cluster.create_database(PG_TEMPLATE)
    engine = create_engine(pg_cluster.url(PG_TEMPLATE))
    with engine.begin() as conn:
        schema.upgrade(conn)
    engine.dispose()  # a template must have no open connections when it is copied
    return PG_TEMPLATE


_pg_databases = itertools.count(1)


@pytest.fixture
def pg_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database at head for one test, dropped after it."""
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    template: str = request.getfixturevalue("pg_template")
    name = f"test_{os.getpid()}_{next(_pg_databases)}"
    cluster.create_database(name, template=template)
    yield cluster.url(name)
    cluster.drop_database(name)


@pytest.fixture
def database_url(db_backend: str, request: pytest.FixtureRequest) -> str | None:
    """None for SQLite (a file in the test's data dir), else a fresh PostgreSQL database's URL."""
    return str(request.getfixturevalue("pg_database_url")) if db_backend == "postgresql" else None


@pytest.fixture
async def db(settings: Settings, database_url: str | None) -> AsyncIterator[Database]:
    database = await open_test_db(settings.data_dir, url=database_url)
    yield database
    await database.close()


@dataclass
class Harness:
    agent: Agent
    server: DemoModelServer
    brain: ScriptedBrain
    db: Database
    settings: Settings

    async def thread(self, owner: str = "alice") -> str:
        return (await thread_store.create_thread(self.db, owner=owner)).id

    def workspace(self, owner: str = "alice") -> Path:
        return self.settings.workspaces_dir / owner


@pytest.fixture
async def make_harness(db: Database, settings: Settings) -> AsyncIterator[Callable[..., Harness]]:
    """Builds an Agent whose model is the scripted server, reached by the real SDK over HTTP."""
    servers: list[DemoModelServer] = []
    clients: list[anthropic.AsyncAnthropic] = []
    agents: list[Agent] = []

    def build(steps: list[Any], registry: ToolRegistry | None = None, **overrides: Any) -> Harness:
        s = settings.model_copy(update=overrides)
        brain = ScriptedBrain(steps)
        server = DemoModelServer(brain=brain, settings=FAST)
        servers.append(server)
        client = anthropic.AsyncAnthropic(api_key="test", base_url=server.start(), max_retries=2)
        clients.append(client)
        deps = AgentDeps(db=db, settings=s, model=ModelClient(client), registry=registry or default_registry(),
                         budget=Budget(db, PriceTable.load(), s))
        agents.append(Agent(deps))
        return Harness(agent=agents[-1], server=server, brain=brain, db=db, settings=s)

    yield build
    for agent in agents:
        await agent.close()
    for client in clients:
        await client.close()
    for server in servers:
        server.stop()


def figures_reporter(name: str, figures: dict[str, int]) -> Any:
    """A module fixture that prints a suite's figures once its tests have run, whatever ran and in what order.

    Every case asserts its own guarantee; the figures are the record (README), not a test of their own."""

    @pytest.fixture(scope="module", autouse=True)
    def _report(request: pytest.FixtureRequest) -> Any:
        yield
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and figures.get("cases"):
            reporter.write_line(f"\n{name} figures: {figures}")

    return _report
