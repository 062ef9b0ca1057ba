"""Builds the one Agent this process serves: settings, store, prices, model (Claude or the demo)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime

import anthropic

from agent.approvals import DeferredApprover
from agent.budget import Budget
from agent.config import Settings
from agent.demo_model import DemoModelServer, DemoSettings
from agent.events import AgentEvent
from agent.loop import Agent, AgentDeps
from agent.model import ModelClient
from agent.otel import OtelExport
from agent.policy import ApprovalPolicy
from agent.pricing import PriceTable
from agent.trace import TraceLog
from store import records
from store import usage as usage_store
from store.db import Database
from store.limits import StoreLimits
from store.schema import SchemaError
from tools import default_registry
from tools.extra import extra_tools
from tools.mcp import McpServers, load_config

log = logging.getLogger("tollgate")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    agent: Agent
    demo: DemoModelServer | None
    mcp: McpServers | None = None

    async def close(self) -> None:
        if self.mcp is not None:
            await self.mcp.close()
        await self.agent.close()
        await self.db.close()
        if self.demo is not None:
            self.demo.stop()


async def build_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or Settings()
    prices = PriceTable.load()
    prices.require(settings.model, datetime.now(UTC).date())  # an unpriced model is refused at start
    prices.require(settings.summary_model, datetime.now(UTC).date())
    db = Database.for_data_dir(settings.data_dir)
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
    released = await usage_store.release_stale_reservations(db)
    if released:
        log.warning("charged %d reservations left open by an earlier process at their worst case", released)
    demo: DemoModelServer | None = None
    if os.environ.get("ANTHROPIC_API_KEY"):
        client = anthropic.AsyncAnthropic()  # honours ANTHROPIC_BASE_URL like the SDK always does
    else:
        demo = DemoModelServer(settings=DemoSettings.from_env())
        base_url = demo.start()
        log.warning("no ANTHROPIC_API_KEY: using the embedded demo model at %s", base_url)
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
    armed = await agent.recover(unwatched, DeferredApprover())
    if armed:
        log.info("re-armed the deadlines of %d threads with pending approvals", armed)
    return Runtime(settings=settings, db=db, agent=agent, demo=demo, mcp=mcp)


async def unwatched(event: AgentEvent) -> None:
    """Events of a turn that no chat is watching (deadline after a restart): the store keeps the outcome."""
