"""Shared fixtures: a real SQLite file, the real SDK over HTTP against the scripted model server."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anthropic
import pytest

from agent.approvals import Approved, Decision, Denied
from agent.budget import Budget
from agent.config import Settings
from agent.events import AgentEvent, ApprovalRequested, EventSink, TurnFinished
from agent.loop import Agent, AgentDeps
from agent.model import ModelClient
from agent.pricing import PriceTable
from fakeclaude import DemoModelServer, DemoSettings, ScriptedBrain
from fakeclaude.app import add_refusal_listener, remove_refusal_listener
from store import threads as thread_store
from store import users as user_store
from store.db import Database
from store.values import Approval
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
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # a turn finished other than suspended

    async def __call__(self, event: AgentEvent) -> None:
        self.events.append(event)
        if isinstance(event, TurnFinished) and event.stop_reason != "awaiting_approval":
            self.ended.set()

    async def turn_ended(self, timeout_s: float = 10.0) -> None:
        """Wait for a turn to finish here, e.g. one the deadline timer resumed."""
        await asyncio.wait_for(self.ended.wait(), timeout_s)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class ScriptedApprover:
    """Decides by tool name; records what it was asked. A missing entry is a test error. An exception
    stands for a broken decider (the card's renderer fails): nothing is recorded."""

    decisions: dict[str, Decision | Exception]
    asked: list[Approval] = field(default_factory=list)

    async def decide(self, approval: Approval) -> Decision | None:
        self.asked.append(approval)
        d = self.decisions[approval.tool]
        if isinstance(d, Exception):
            raise d
        return d


class Decider(Protocol):
    async def decide(self, approval: Approval) -> Decision | None: ...


def deciding(agent: Agent, emit: EventSink, approver: Decider) -> EventSink:
    """A chat where someone answers each card as soon as it is shown, through the product's one decision
    path (Agent.decide; the turn is still running and reads the row back, so no wake-up is needed)."""

    async def sink(event: AgentEvent) -> None:
        await emit(event)
        if isinstance(event, ApprovalRequested):
            decision = await approver.decide(event.approval)
            if decision is not None:
                await agent.decide(approval_id=event.approval.id, decision=decision, by=event.approval.owner,
                                   how="chat", wake=False)

    return sink


APPROVE_ALL = ScriptedApprover({"write_file": Approved(), "delete_file": Approved()})
REJECT_ALL = ScriptedApprover({"write_file": Denied("no thanks"), "delete_file": Denied("no thanks")})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", approval_timeout_s=30)


async def open_test_db(data_dir: Path, users: tuple[str, ...] = ("alice", "bob")) -> Database:
    """A real SQLite database in `data_dir` with the schema and these users (passwords the policy accepts)."""
    database = Database.for_data_dir(data_dir)
    await database.create_schema()
    for i, name in enumerate(users, 1):
        await user_store.add_user(database, name=name, password=f"orchard-apple-{i}")
    return database


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = await open_test_db(settings.data_dir)
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
