"""MCP tools behind the gate, against real MCP servers (tests/mcp_servers/probe.py, the SDK's FastMCP) over
stdio and Streamable HTTP on loopback, driven by the real demo model (it obeys injected instructions)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest

from agent.approvals import Approved, Denied
from agent.budget import Budget
from agent.config import Settings
from agent.demo_model import DemoModelServer
from agent.events import ApprovalRequested, ToolFinished
from agent.loop import Agent, AgentDeps
from agent.model import ModelClient
from agent.pricing import PriceTable
from store import threads as thread_store
from store.db import Database
from tests.conftest import FAST, Recorder, ScriptedApprover
from tests.mcp_servers.harness import HttpProbe, start_http_probe, stdio_config
from tools import ToolRegistry, default_registry
from tools.mcp import McpServers, ServerConfig

TRANSPORTS = ["stdio", "http"]


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
    settings: Settings
    registry: ToolRegistry
    servers: McpServers

    async def turn(self, text: str, approver: Any, owner: str = "alice", thread: str | None = None) -> Recorder:
        tid = thread or (await thread_store.create_thread(self.db, owner=owner)).id
        rec = Recorder()
        await self.agent.run_turn(owner=owner, thread_id=tid, text=text, emit=rec, approver=approver)
        return rec


@pytest.fixture
async def make_rig(db: Database, settings: Settings, model_url: str, http_probe: HttpProbe
                   ) -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[Agent, anthropic.AsyncAnthropic, McpServers]] = []

    async def build(transport: str = "stdio", *, read_only: tuple[str, ...] = (), timeout_s: float | None = None,
                    configs: list[ServerConfig] | None = None) -> Rig:
        if configs is None:
            cfg = (stdio_config(read_only=read_only, timeout_s=timeout_s) if transport == "stdio"
                   else http_probe.config(read_only=read_only, timeout_s=timeout_s))
            configs = [cfg]
        servers = McpServers(configs, timeout_s=settings.tool_timeout_s)
        registry = default_registry()
        registry.add(await servers.start(on_late_tools=registry.add))
        client = anthropic.AsyncAnthropic(api_key="test", base_url=model_url, max_retries=0)
        deps = AgentDeps(db=db, settings=settings, model=ModelClient(client), registry=registry,
                         budget=Budget(db, PriceTable.load(), settings))
        made.append((Agent(deps), client, servers))
        return Rig(agent=made[-1][0], db=db, settings=settings, registry=registry, servers=servers)

    yield build
    for agent, client, servers in made:
        await agent.close()
        await client.close()
        await servers.close()


def call(tool: str, **args: Any) -> str:
    return f"call {tool} with {json.dumps(args)}" if args else f"call {tool}"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_read_only_by_config_runs_without_a_card(make_rig, transport):
    rig = await make_rig(transport, read_only=("lookup",))
    approver = ScriptedApprover({})
    rec = await rig.turn(call("probe__lookup", key="colour"), approver)
    assert not approver.asked and not rec.of(ApprovalRequested)
    [done] = rec.of(ToolFinished)
    assert done.name == "probe__lookup" and not done.is_error and "value of colour: 42" in done.output


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unmarked_tool_asks_and_runs_the_approved_arguments(make_rig, transport):
    rig = await make_rig(transport, read_only=("lookup",))
    approver = ScriptedApprover({"probe__echo": Approved()})
    rec = await rig.turn(call("probe__echo", text="hello", count=2), approver)
    [card] = [e.approval for e in rec.of(ApprovalRequested)]
    assert card.tool == "probe__echo" and card.args == {"text": "hello", "count": 2}
    assert "MCP server probe, tool echo: Echo the text back." in card.risk
    [done] = rec.of(ToolFinished)
    assert done.output == "hello hello" and not done.is_error


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_annotations_claiming_read_only_still_ask(make_rig, transport):
    rig = await make_rig(transport)
    approver = ScriptedApprover({"probe__claims_read_only": Denied("not now")})
    rec = await rig.turn(call("probe__claims_read_only", text="x"), approver)
    [card] = [e.approval for e in rec.of(ApprovalRequested)]
    assert "readOnlyHint=true" in card.risk and "unverified" in card.risk  # shown, not trusted
    assert not rec.of(ToolFinished)  # rejected: the server was never called
    assert rig.registry.get("probe__claims_read_only").side_effect


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_injected_instruction_in_an_mcp_result_gets_a_card_naming_the_server(make_rig, transport):
    rig = await make_rig(transport, read_only=("read_inbox",))
    victim = rig.settings.workspaces_dir / "alice" / "notes" / "victim.txt"
    victim.parent.mkdir(parents=True)
    victim.write_text("keep me")
    approver = ScriptedApprover({"delete_file": Denied("I did not ask for that")})
    rec = await rig.turn(call("probe__read_inbox"), approver)
    [card] = [e.approval for e in rec.of(ApprovalRequested)]
    assert card.tool == "delete_file" and card.args == {"path": "notes/victim.txt"}  # the model obeyed
    assert list(card.untrusted_sources) == ["probe__read_inbox"]
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_users_never_see_each_others_session_state(make_rig, transport):
    rig = await make_rig(transport, read_only=("remember", "recall"))
    approver = ScriptedApprover({})
    await rig.turn(call("probe__remember", value="alice-secret"), approver, owner="alice")
    bob = (await rig.turn(call("probe__recall"), approver, owner="bob")).of(ToolFinished)
    alice = (await rig.turn(call("probe__recall"), approver, owner="alice")).of(ToolFinished)
    assert bob[0].output == "(nothing remembered)" and "alice-secret" not in bob[0].output
    assert alice[0].output == "alice-secret"


async def test_server_killed_mid_call_is_an_error_result_and_the_next_call_reconnects(make_rig):
    rig = await make_rig("stdio", read_only=("die", "lookup"))
    approver = ScriptedApprover({})
    [died] = (await rig.turn(call("probe__die"), approver)).of(ToolFinished)
    assert died.is_error and "went away during the call" in died.output
    [after] = (await rig.turn(call("probe__lookup", key="k"), approver)).of(ToolFinished)
    assert not after.is_error and "value of k: 42" in after.output


async def test_a_slow_call_times_out_and_the_session_keeps_working(make_rig):
    rig = await make_rig("stdio", read_only=("slow", "lookup"), timeout_s=2.0)
    approver = ScriptedApprover({})
    [slow] = (await rig.turn(call("probe__slow", seconds=60), approver)).of(ToolFinished)
    assert slow.is_error and "timed out" in slow.output
    [after] = (await rig.turn(call("probe__lookup", key="k"), approver)).of(ToolFinished)
    assert not after.is_error


async def test_arguments_are_checked_against_the_servers_schema_before_any_card(make_rig):
    rig = await make_rig("stdio")
    approver = ScriptedApprover({})
    rec = await rig.turn(call("probe__echo", text="hi", count="two"), approver)
    assert not approver.asked and not rec.of(ToolFinished)


async def test_tools_block_is_byte_identical_across_restarts(make_rig, http_probe):
    configs = [stdio_config("alpha"), http_probe.config("beta"), stdio_config("gamma", read_only=("echo",))]
    first = await make_rig(configs=configs)
    second = await make_rig(configs=list(reversed(configs)))
    blob = [json.dumps(r.registry.api_definitions()).encode() for r in (first, second)]
    assert blob[0] == blob[1]
    names = first.registry.names
    assert "alpha__echo" in names and "beta__echo" in names and "read_file" in names
    assert list(names) == sorted(names)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_http_server_killed_is_an_error_result_and_a_restart_is_reconnected(make_rig):
    port = _free_port()
    probe = start_http_probe(port)
    try:
        rig = await make_rig(configs=[probe.config("own", read_only=("lookup",), timeout_s=20)])
        approver = ScriptedApprover({})
        [ok] = (await rig.turn(call("own__lookup", key="a"), approver)).of(ToolFinished)
        assert not ok.is_error
        probe.stop()
        [down] = (await rig.turn(call("own__lookup", key="b"), approver)).of(ToolFinished)
        assert down.is_error and "MCP server own" in down.output
        assert down.duration_ms < 10_000  # reported at once, not after the call's timeout
        probe = start_http_probe(port)
        status = rig.servers.status()[0]
        assert status.name == "own" and status.transport == "http"
        [back] = (await rig.turn(call("own__lookup", key="c"), approver)).of(ToolFinished)
        if back.is_error:  # the down call may have left a backoff of up to BACKOFF_START_S: one more try
            assert "tried again" in back.output
            [back] = (await rig.turn(call("own__lookup", key="c"), approver)).of(ToolFinished)
        assert not back.is_error and "value of c: 42" in back.output
    finally:
        probe.stop()


async def test_a_server_down_at_start_up_does_not_stop_the_chat_and_registers_when_up(make_rig):
    import asyncio

    port = _free_port()
    config = ServerConfig(name="late", url=f"http://127.0.0.1:{port}/mcp")
    rig = await make_rig(configs=[config, stdio_config("early", read_only=("lookup",))])
    assert "early__lookup" in rig.registry and not any(n.startswith("late__") for n in rig.registry.names)
    assert not rig.servers.status()[1].up and rig.servers.status()[1].last_error
    [listed] = (await rig.turn("list my files", ScriptedApprover({}))).of(ToolFinished)  # the chat works
    assert not listed.is_error
    arrived = asyncio.Event()
    late_servers = McpServers([config], timeout_s=10)
    late: list[str] = []

    def on_late(tools: list[Any]) -> None:
        late.extend(t.name for t in tools)
        arrived.set()

    assert await late_servers.start(on_late_tools=on_late) == []
    probe = start_http_probe(port)
    try:
        async with asyncio.timeout(90):
            await arrived.wait()  # the background retry with backoff found it
        assert "late__echo" in late and late == sorted(late)
    finally:
        await late_servers.close()
        probe.stop()
