"""Reservations sized by the free count_tokens endpoint plus a margin, falling back to ceil(bytes / 2.5).

The bound is checked against a model whose tokenizer runs at 2.5 characters per token (the 5.x tokenizer
on English text) and whose count_tokens undercounts its own bill by 5 % (the endpoint is "an estimate
within a small margin"): every chat call's reservation covers what it was billed, on the count path, on
a count that fails, and on a count that hangs past the timeout. The counting endpoint is faked at the
HTTP level (an httpx transport in front of the strict demo model); every other request reaches the demo.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx2 as httpx
import pytest
from sqlalchemy import select

from agent.budget import Budget
from agent.config import Settings
from agent.demo_model import DemoModelServer, Reply, ScriptedBrain, TextBlock, ToolUseBlock
from agent.demo_model.tokens import prompt_blocks
from agent.events import TextDelta
from agent.loop import Agent, AgentDeps
from agent.model import ModelClient
from agent.pricing import PriceTable
from store import threads as thread_store
from store.db import Database
from store.model_prefs import thread_settings
from store.models import ESTIMATE_MARGINS, MODEL_CALLS
from tests.conftest import APPROVE_ALL, FAST, Recorder
from tools import ToolRegistry, default_registry

CHARS_PER_TOKEN = 2.5
COUNT_UNDER = 0.95  # the counter's own error: it reports 5 % fewer tokens than it bills


def billed_prompt_tokens(body: dict[str, Any]) -> int:
    """What a 2.5-characters-a-token model bills for this prompt (the demo's flattening, its own tokenizer)."""
    return math.ceil(sum(len(b.text) for b in prompt_blocks(body)) / CHARS_PER_TOKEN)


class CountingTransport(httpx.AsyncBaseTransport):
    """count_tokens answered at 2.5 characters a token, 5 % low ("ok"), with a 500 ("fail"), or never
    ("hang"); everything else goes to the demo model over real HTTP."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.counts = 0
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/v1/messages/count_tokens"):
            return await self._inner.handle_async_request(request)
        self.counts += 1
        if self.mode == "hang":
            await asyncio.Event().wait()  # never answers: the client's timeout must end it
        if self.mode == "fail":
            return httpx.Response(500, json={"type": "error", "error": {"type": "api_error", "message": "boom"}})
        body = json.loads(await request.aread())
        return httpx.Response(200, json={"input_tokens": int(billed_prompt_tokens(body) * COUNT_UNDER)})

    async def aclose(self) -> None:
        await self._inner.aclose()


def billed(text: str, *blocks: Any, stop: str = "end_turn") -> Callable[[dict[str, Any]], Reply]:
    """A reply billed at 2.5 characters a token for the prompt it answers."""
    def step(body: dict[str, Any]) -> Reply:
        return Reply((TextBlock(text), *blocks), stop, usage_override={
            "input_tokens": billed_prompt_tokens(body), "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0})
    return step


ENGLISH = ("The quarterly review moved to Friday; Ana owns the launch checklist and wants the notes "
           "summarised before the meeting, with every open question listed at the end. ")


@pytest.fixture
async def agent_with(db: Database, settings: Settings) -> AsyncIterator[Callable[..., tuple[Agent, CountingTransport]]]:
    made: list[tuple[Agent, DemoModelServer, anthropic.AsyncAnthropic]] = []

    def build(mode: str, steps: list[Any], **overrides: Any) -> tuple[Agent, CountingTransport]:
        s = settings.model_copy(update=overrides)
        server = DemoModelServer(brain=ScriptedBrain(steps), settings=FAST)
        transport = CountingTransport(mode)
        client = anthropic.AsyncAnthropic(api_key="test", base_url=server.start(), max_retries=0,
                                          http_client=httpx.AsyncClient(transport=transport))
        agent = Agent(AgentDeps(db=db, settings=s, model=ModelClient(client), registry=default_registry(),
                                budget=Budget(db, PriceTable.load(), s)))
        made.append((agent, server, client))
        return agent, transport

    yield build
    for agent, server, client in made:
        await agent.close()
        await client.close()
        server.stop()


async def chat_calls(db: Database) -> list[Any]:
    async with db.read() as conn:
        return list(await conn.execute(select(MODEL_CALLS).where(MODEL_CALLS.c.purpose == "chat")
                                       .order_by(MODEL_CALLS.c.id)))


async def session(agent: Agent, db: Database) -> None:
    """Three turns of English text, one with a tool call: prompts of a few thousand characters."""
    tid = (await thread_store.create_thread(db, owner="alice")).id
    for i in range(3):
        rec = Recorder()
        await agent.run_turn(owner="alice", thread_id=tid, text=f"Turn {i}: " + ENGLISH * (5 + 10 * i), emit=rec,
                             approver=APPROVE_ALL)
        assert "".join(e.text for e in rec.of(TextDelta)).strip(), "every turn ends with visible text"


def steps() -> list[Any]:
    return [billed("Let me look.", ToolUseBlock("list_files", {"path": "."}), stop="tool_use"),
            billed(ENGLISH * 3), billed(ENGLISH * 2), billed(ENGLISH)]


@pytest.mark.parametrize("mode", ["ok", "fail", "hang"])
async def test_a_reservation_is_never_below_the_bill_at_2_5_characters_a_token(agent_with, db, mode):
    agent, transport = agent_with(mode, steps(), count_tokens_timeout_s=0.3)
    await session(agent, db)
    calls = await chat_calls(db)
    assert len(calls) == 4 and transport.counts == 4
    max_tokens = agent.deps.settings.max_tokens
    for c in calls:
        prompt = c.input_tokens + c.cache_write_5m_tokens + c.cache_write_1h_tokens + c.cache_read_tokens
        assert c.reserved_tokens - max_tokens >= prompt, (mode, c.reserved_tokens, prompt)
        assert c.cost_nanousd <= c.reserved_nanousd
    async with db.read() as conn:
        assert (await conn.execute(select(ESTIMATE_MARGINS))).first() is None  # no overrun was ever recorded
    assert agent.context.count_fallbacks == (0 if mode == "ok" else 4)


async def test_without_the_margin_the_undercounting_counter_would_reserve_too_little(agent_with, db):
    """The margin is what makes the count an upper bound: at 0 % the same session under-reserves."""
    agent, _ = agent_with("ok", steps(), count_tokens_margin_pct=0)
    await session(agent, db)
    short = [c for c in await chat_calls(db)
             if c.reserved_tokens - agent.deps.settings.max_tokens < c.input_tokens]
    assert short


async def test_the_count_is_asked_with_the_calls_own_system_tools_messages_and_thinking(make_harness):
    h = make_harness([Reply((TextBlock("Looking."), ToolUseBlock("list_files", {"path": "."})), "tool_use"),
                      Reply((TextBlock("Nothing there."),))])
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="what files", emit=Recorder(), approver=APPROVE_ALL)
    assert len(h.server.count_requests) == len(h.server.requests) == 2
    for counted, sent in zip(h.server.count_requests, h.server.requests, strict=True):
        for field in ("model", "system", "tools", "messages", "thinking", "output_config"):
            assert counted[field] == sent[field], field
    assert (await thread_settings(h.db, thread_id=tid)) is not None
    assert h.agent.context.count_fallbacks == 0


async def test_a_count_that_finds_stale_thinking_drops_it_before_the_call_is_made(make_harness, demo_refusals):
    """count_tokens runs the API's prefix check for free: thinking bound to an older tool set is dropped
    before the chat call, so no chat call is refused."""
    demo_refusals.expect("bound to a different conversation")
    h = make_harness([Reply((TextBlock("One."),)), Reply((TextBlock("Two."),))])
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="one", emit=Recorder(), approver=APPROVE_ALL)
    h.agent.deps.registry = ToolRegistry([t for t in default_registry() if t.name != "delete_file"])
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="two", emit=Recorder(), approver=APPROVE_ALL)
    assert done.stop_reason == "end_turn"
    assert [path for _, _, path in demo_refusals.seen] == ["/v1/messages/count_tokens"]
    assert len(h.server.requests) == 2  # every chat call went through
    assert not any(b["type"] == "thinking" for b in h.server.requests[1]["messages"][1]["content"])
