"""Builds the one Agent this process serves: settings, store, prices, model (Claude or the demo), and its
membership of the deployment (registry, sweeper, due-resume dispatcher, LISTEN wake-ups on PostgreSQL)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime

import anthropic

from agent import wakeups
from agent.budget import Budget
from agent.config import Settings
from agent.loop import Agent, AgentDeps
from agent.model import ModelClient
from agent.otel import OtelExport
from agent.policy import ApprovalPolicy
from agent.pricing import PriceTable
from agent.trace import TraceLog
from store import records
from store.db import Database
from store.limits import StoreLimits
from store.notify import ChangeRelay, PgListener
from store.schema import SchemaError
from tools import default_registry
from tools.extra import extra_tools
from tools.mcp import McpServers, load_config
from ui.demo_model import DemoModelProcess
from ui.setup import SharedSettingMissing

log = logging.getLogger("tollgate")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    agent: Agent
    demo: DemoModelProcess | None
    listener: PgListener | None = None
    relay: ChangeRelay | None = None
    mcp: McpServers | None = None

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        if self.relay is not None:
            await self.relay.close()
        if self.mcp is not None:
            await self.mcp.close()
        await self.agent.close()
        await self.agent.member.close()
        await self.db.close()
        if self.demo is not None:
            await self.demo.stop()


async def build_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or Settings()
    prices = PriceTable.load()
    prices.require(settings.model, datetime.now(UTC).date())  # an unpriced model is refused at start
    prices.require(settings.summary_model, datetime.now(UTC).date())
    db = Database.for_data_dir(settings.data_dir)
    if not db.is_sqlite and settings.workspaces is None:
        await db.close()
        raise SharedSettingMissing("TOLLGATE_WORKSPACES is required when TOLLGATE_DATABASE_URL is PostgreSQL: "
                                   "every app process must see the same users' files (a shared directory; "
                                   "README \"Past one machine\")")
    try:
        await db.upgrade_schema()
    except SchemaError as e:  # a schema from a newer Tollgate, or one it does not recognise: do not start
        log.critical("cannot start on this database: %s", e)
        await db.close()
        raise
    db.limits = StoreLimits(max_threads_per_user=settings.max_threads_per_user,
                            max_message_chars=settings.max_user_message_chars, max_step_chars=settings.max_step_chars)
    if settings.retention_days is not None:
        purged = await records.purge_deleted(db, older_than_days=settings.retention_days, by="startup")
        log.info("retention %s days: purged %d deleted threads (%d approvals, %d tool calls)",
                 settings.retention_days, purged.threads, purged.approvals, purged.tool_calls)
    demo: DemoModelProcess | None = None
    if os.environ.get("ANTHROPIC_API_KEY"):
        client = anthropic.AsyncAnthropic()  # honours ANTHROPIC_BASE_URL like the SDK always does
    else:
        demo = DemoModelProcess()  # a child process: the product never imports the fake model
        base_url = await demo.start()
        log.warning("no ANTHROPIC_API_KEY: using the demo model (python -m fakeclaude) at %s", base_url)
        client = anthropic.AsyncAnthropic(api_key="demo-key", base_url=base_url)
    trace = TraceLog(settings.data_dir / "trace.jsonl", sinks=[s for s in [OtelExport.from_env()] if s])
    registry = default_registry()
    registry.add(extra_tools())  # TOLLGATE_TOOL_MODULES and the "tollgate.tools" entry points
    mcp = McpServers(load_config(), timeout_s=settings.tool_timeout_s)  # TOLLGATE_MCP_CONFIG
    registry.add(await mcp.start(on_late_tools=registry.add))
    deps = AgentDeps(db=db, settings=settings, model=ModelClient(client), registry=registry,
                     budget=Budget(db, prices, settings, trace=trace), route_for=ApprovalPolicy.load().route_for,
                     trace=trace)
    agent = Agent(deps)
    # Registers this process; SQLite (one process per file): reservations left open by an earlier run are
    # charged at their worst case. PostgreSQL: only those of processes whose heartbeat stopped, by a sweeper.
    await agent.member.start()
    armed = await agent.recover()
    if armed:
        log.info("gave %d threads with pending approvals their deadline rows", armed)
    listener, relay = None, None
    if not db.is_sqlite:
        # A decision on another process reaches this one at once (the dispatcher also polls), and so does an
        # approval asked or decided there: the operator console's push (the console also re-reads slowly).
        listener = PgListener(db.url, agent.dispatcher.poke, origin=agent.member.id)
        listener.start()
        relay = ChangeRelay(db, origin=agent.member.id)
    agent.dispatcher.start()
    rt = Runtime(settings=settings, db=db, agent=agent, demo=demo, listener=listener, relay=relay, mcp=mcp)
    from ui import live  # ui.live builds on this module

    live.attach(rt)
    return rt


unwatched = wakeups.unwatched  # events of a turn that no chat is watching: the store keeps the outcome
