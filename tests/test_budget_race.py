"""Many concurrent sessions of ONE user against a small daily limit: spend never passes the limit.

Sixty threads of alice start a turn at once through two Agents, each with its own Database engines
on the same database (as two app processes would have), so reservations race both inside one
writer connection and across two writer connections: on SQLite BEGIN IMMEDIATE + busy_timeout, on
PostgreSQL (READ COMMITTED) the write transactions' advisory lock (docs/budgets.md).
"""

from __future__ import annotations

import asyncio
import logging

import anthropic
import pytest
from sqlalchemy import select

from agent.budget import Budget
from agent.demo_model import Reply, TextBlock
from agent.events import Notice, TurnFinished
from agent.loop import Agent, AgentDeps
from agent.model import ModelClient
from agent.pricing import PriceTable
from store import usage as usage_store
from store import users as user_store
from store.db import Database
from store.models import MODEL_CALLS
from tests.conftest import APPROVE_ALL, Recorder
from tools import default_registry

pytestmark = pytest.mark.both_backends

SESSIONS = 60
OUTPUT = 20_000  # reported by every call: 20k output tokens at $10/M = $0.20
LIMIT = 1_000_000_000  # $1.00 a day: room for only a few such calls


async def test_concurrent_sessions_of_one_user_never_exceed_the_daily_limit(make_harness, settings, caplog):
    usage = {"input_tokens": 1_000, "output_tokens": OUTPUT, "cache_creation_input_tokens": 0,
             "ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0, "cache_read_input_tokens": 0}
    h = make_harness([Reply(blocks=(TextBlock("ok"),), usage_override=usage)] * SESSIONS, max_tokens=OUTPUT)
    await usage_store.set_budget(h.db, user="alice", daily_nanousd=LIMIT, monthly_nanousd=None)
    db2 = Database(h.db.url)  # a second "process": its own engines and writer connection
    client2 = anthropic.AsyncAnthropic(api_key="test", base_url=h.server.base_url, max_retries=2)
    agent2 = Agent(AgentDeps(db=db2, settings=h.settings, model=ModelClient(client2), registry=default_registry(),
                             budget=Budget(db2, PriceTable.load(), h.settings)))
    try:
        threads = [await h.thread() for _ in range(SESSIONS)]
        recorders = [Recorder() for _ in threads]
        with caplog.at_level(logging.WARNING):
            results = await asyncio.gather(*(
                (h.agent, agent2)[i % 2].run_turn(owner="alice", thread_id=tid, text="hi", emit=rec,
                                                  approver=APPROVE_ALL)
                for i, (tid, rec) in enumerate(zip(threads, recorders, strict=True))), return_exceptions=True)
    finally:
        await agent2.close()
        await client2.close()
        await db2.close()

    errors = [r for r in results if not isinstance(r, TurnFinished)]
    assert errors == []  # no "database is locked" or anything else escaped a turn
    assert "locked" not in caplog.text
    async with h.db.read() as conn:
        rows = (await conn.execute(select(MODEL_CALLS))).all()
    assert [r for r in rows if r.status != "settled"] == []  # nothing left reserved, nothing failed
    spent = sum(r.cost_nanousd for r in rows)
    assert spent <= LIMIT
    assert spent == await usage_store.spent(h.db, scope="user_day", user="alice")

    stops = [r.stop_reason for r in results if isinstance(r, TurnFinished)]
    refused = stops.count("budget")
    assert refused >= 1 and stops.count("end_turn") == len(rows) >= 1
    assert refused + len(rows) == SESSIONS
    notices = [n for rec in recorders for n in rec.of(Notice)]
    assert all(n.kind == "budget" and "daily budget for alice" in n.message for n in notices)
    assert len(notices) == refused
    # The limit binds: one more call's worst case would not have fitted beside what was spent.
    assert spent + min(r.reserved_nanousd for r in rows) > LIMIT
    assert h.brain.remaining == SESSIONS - len(rows)  # refused sessions never reached the model


async def test_concurrent_reservations_from_two_engines_never_overbook(db, settings):
    """The measured PostgreSQL failure: sum-then-insert under READ COMMITTED let two reservations of 60
    against a cap of 100 both commit. Forty reservations of 60 race here, from two engines: one fits."""
    cap = usage_store.SpendLimit(name="daily budget for carol", scope="user_day", cap=100)
    await user_store.add_user(db, name="carol", password="orchard-apple-7")
    db2 = Database(db.url)

    async def warm(database: Database, ready: asyncio.Barrier) -> None:
        async with database.read() as conn:  # opened together: the pools hold live connections, so the
            await conn.exec_driver_sql("SELECT 1")  # reservations below start together, not one per connect
            await ready.wait()

    barrier = asyncio.Barrier(8)
    await asyncio.gather(*(warm((db, db2)[i % 2], barrier) for i in range(8)))
    try:
        results = await asyncio.gather(*(
            usage_store.reserve((db, db2)[i % 2], user="carol", thread_id=None, turn_id=f"t{i}", model="m",
                                purpose="chat", amount_nanousd=60, tokens=1, limits=[cap])
            for i in range(40)), return_exceptions=True)
    finally:
        await db2.close()
    granted = [r for r in results if isinstance(r, str)]
    assert len(granted) == 1
    assert all(isinstance(r, usage_store.LimitReached) for r in results if not isinstance(r, str))
    async with db.read() as conn:
        held = sum(r.reserved_nanousd for r in (await conn.execute(select(MODEL_CALLS))).all()
                   if r.status == "reserved")
    assert held == 60
