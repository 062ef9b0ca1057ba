"""Users' own MCP servers (tools/mcp/user_servers.py) in the agent: a real probe MCP server over Streamable HTTP,
the real demo model over the real SDK. alice's server is alice's alone; every one of its tools asks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest

from agent.approvals import Approved
from agent.budget import Budget
from agent.config import Settings
from agent.events import ApprovalRequested, TextDelta, ToolFinished
from agent.loop import Agent, AgentDeps
from agent.model import ModelClient
from agent.pricing import PriceTable
from fakeclaude import DemoModelServer
from store import threads as thread_store
from store.db import Database
from tests.conftest import FAST, Recorder, ScriptedApprover, deciding
from tests.mcp_servers.harness import HttpProbe, start_http_probe
from tools import ToolRegistry, default_registry
from tools.mcp.connection import Connection
from tools.mcp.user_servers import MAX_SERVERS_PER_USER, UserServerRefused, UserServers


@pytest.fixture(scope="module")
def http_probe() -> Iterator[HttpProbe]:
    probe = start_http_probe()
    yield probe
    probe.stop()


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    server = DemoModelServer(settings=FAST)
    yield server.start()
    server.stop()


@dataclass
class Rig:
    agent: Agent
    db: Database
    registry: ToolRegistry
    users: UserServers
    probe: HttpProbe
    conns: list[Connection]

    async def connect(self, user: str, name: str = "mine") -> None:
        conn = Connection(self.probe.config(name))
        await conn.open()
        self.conns.append(conn)
        await self.users.add(user=user, name=name, url=self.probe.url, client=conn.client)

    async def turn(self, text: str, approver: Any, owner: str) -> tuple[Recorder, str]:
        tid = (await thread_store.create_thread(self.db, owner=owner)).id
        rec = Recorder()
        await self.agent.run_turn(owner=owner, thread_id=tid, text=text, emit=deciding(self.agent, rec, approver))
        return rec, tid


@pytest.fixture
async def rig(db: Database, settings: Settings, model_url: str, http_probe: HttpProbe) -> AsyncIterator[Rig]:
    registry = default_registry()
    users = UserServers(timeout_s=settings.tool_timeout_s, reserved=frozenset({"tasks"}))
    client = anthropic.AsyncAnthropic(api_key="test", base_url=model_url, max_retries=0)
    agent = Agent(AgentDeps(db=db, settings=settings, model=ModelClient(client), registry=registry,
                            budget=Budget(db, PriceTable.load(), settings), user_tools=users.tools_of))
    r = Rig(agent=agent, db=db, registry=registry, users=users, probe=http_probe, conns=[])
    yield r
    await agent.close()
    await client.close()
    for conn in r.conns:
        await conn.close()


def call(tool: str, **args: Any) -> str:
    return f"call {tool} with {json.dumps(args)}"


async def test_every_tool_of_a_users_server_asks_even_one_claiming_read_only(rig: Rig) -> None:
    await rig.connect("alice")
    approver = ScriptedApprover({"mine__claims_read_only": Approved()})
    rec, tid = await rig.turn(call("mine__claims_read_only", text="x"), approver, owner="alice")
    [asked] = rec.of(ApprovalRequested)
    card = asked.approval
    assert card.tool == "mine__claims_read_only" and card.args == {"text": "x"}
    assert "alice's own MCP server mine" in card.risk and "readOnlyHint=true" in card.risk
    assert not asked.can_always  # "approve always" is never offered for a user's server
    [done] = rec.of(ToolFinished)
    assert done.output == "did x" and not done.is_error
    # The result entered the context as untrusted output naming the tool.
    stored = json.dumps([m.content for m in await thread_store.load_messages(rig.db, owner="alice", thread_id=tid)])
    assert 'source=\\"mine__claims_read_only\\" trust=\\"untrusted\\"' in stored


async def test_another_user_never_sees_or_calls_them(rig: Rig) -> None:
    shared = json.dumps(rig.registry.api_definitions()).encode()
    await rig.connect("alice")
    alice = rig.agent.deps.registry_for("alice")
    assert "mine__lookup" in alice.names and "mine__lookup" not in rig.registry  # never in the shared registry
    bob = rig.agent.deps.registry_for("bob")
    assert bob is rig.registry and json.dumps(bob.api_definitions()).encode() == shared  # same bytes: cache kept
    approver = ScriptedApprover({})
    rec, _ = await rig.turn(call("mine__lookup", key="k"), approver, owner="bob")
    said = "".join(e.text for e in rec.of(TextDelta))
    assert "mine__lookup tool is not available" in said  # the model was not offered it
    assert not approver.asked and not rec.of(ToolFinished)


async def test_a_removed_server_takes_its_tools_with_it(rig: Rig) -> None:
    await rig.connect("alice")
    [server] = rig.users.servers_of("alice")
    other = Connection(rig.probe.config("mine"))
    await other.open()
    rig.conns.append(other)
    assert not rig.users.remove(user="alice", name="mine", client=other.client)  # a stale disconnect: kept
    assert rig.users.remove(user="alice", name="mine", client=server.client)
    assert rig.agent.deps.registry_for("alice") is rig.registry


@pytest.mark.parametrize(("name", "why"), [("Mine", "lower-case"), ("a__b", "lower-case"),
                                           ("tasks", "taken by a server this deployment configures")])
async def test_bad_or_operator_names_are_refused(rig: Rig, name: str, why: str) -> None:
    with pytest.raises(UserServerRefused, match=why):
        await rig.connect("alice", name)
    assert rig.users.tools_of("alice") == []


async def test_a_user_has_at_most_a_few_servers(rig: Rig) -> None:
    for i in range(MAX_SERVERS_PER_USER):
        await rig.connect("alice", f"s{i}")
    with pytest.raises(UserServerRefused, match="at most"):
        await rig.connect("alice", "onemore")
