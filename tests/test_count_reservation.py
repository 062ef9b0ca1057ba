"""Reservations sized by the free count_tokens endpoint plus a margin, falling back to ceil(bytes / 2.5).

The bound is checked against a model whose tokenizer runs at 2.5 characters per token (the 5.x tokenizer
on English text) and whose count_tokens undercounts its own bill by 5 % (the endpoint is "an estimate
within a small margin"): every chat call's reservation covers what it was billed, on the count path, on
a count that fails, and on a count that hangs past the timeout. The counting endpoint is faked at the
HTTP level (an httpx transport in front of the strict demo model); every other request reaches the demo.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import anthropic
import httpx2 as httpx
import pytest
from sqlalchemy import select

from agent.budget import Budget
from agent.config import Settings
from agent.context import ModelRequest, Summary, build_request
from agent.events import TextDelta
from agent.loop import Agent, AgentDeps
from agent.model import ModelClient
from agent.pricing import PriceTable
from agent.reservation import PromptSizer, byte_estimate, follow_up_tokens
from agent.thread_model import ModelChoice
from fakeclaude import DemoModelServer, Reply, ScriptedBrain, TextBlock, ToolUseBlock
from fakeclaude.tokens import prompt_blocks
from store import threads as thread_store
from store.db import Database
from store.model_prefs import thread_settings
from store.models import ESTIMATE_MARGINS, MODEL_CALLS
from store.usage import TokenUsage
from store.values import StoredMessage
from tests.conftest import APPROVE_ALL, FAST, Recorder, deciding
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
        await agent.run_turn(owner="alice", thread_id=tid, text=f"Turn {i}: " + ENGLISH * (5 + 10 * i),
            emit=deciding(agent, rec, APPROVE_ALL))
        assert "".join(e.text for e in rec.of(TextDelta)).strip(), "every turn ends with visible text"


def steps() -> list[Any]:
    return [billed("Let me look.", ToolUseBlock("list_files", {"path": "."}), stop="tool_use"),
            billed(ENGLISH * 3), billed(ENGLISH * 2), billed(ENGLISH)]


@pytest.mark.parametrize("mode", ["ok", "fail", "hang"])
async def test_a_reservation_is_never_below_the_bill_at_2_5_characters_a_token(agent_with, db, mode):
    agent, transport = agent_with(mode, steps(), count_tokens_timeout_s=0.3)
    await session(agent, db)
    calls = await chat_calls(db)
    # One count per turn: the tool turn's follow-up is sized from its first call's bill, in every mode.
    assert len(calls) == 4 and transport.counts == 3
    assert agent.context.sizer.follow_ups == 1
    max_tokens = agent.deps.settings.max_tokens
    for c in calls:
        prompt = c.input_tokens + c.cache_write_5m_tokens + c.cache_write_1h_tokens + c.cache_read_tokens
        assert c.reserved_tokens - max_tokens >= prompt, (mode, c.reserved_tokens, prompt)
        assert c.cost_nanousd <= c.reserved_nanousd
    async with db.read() as conn:
        assert (await conn.execute(select(ESTIMATE_MARGINS))).first() is None  # no overrun was ever recorded
    assert agent.context.sizer.count_fallbacks == (0 if mode == "ok" else 3)


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
    await h.agent.run_turn(owner="alice", thread_id=tid, text="what files",
        emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    # One count for the turn, asked with the first call's own fields; the follow-up reuses that call's bill.
    assert len(h.server.count_requests) == 1 and len(h.server.requests) == 2
    for field in ("model", "system", "tools", "messages", "thinking", "output_config"):
        assert h.server.count_requests[0][field] == h.server.requests[0][field], field
    assert (await thread_settings(h.db, thread_id=tid)) is not None
    assert h.agent.context.sizer.count_fallbacks == 0


async def test_a_count_that_finds_stale_thinking_drops_it_before_the_call_is_made(make_harness, demo_refusals):
    """count_tokens runs the API's prefix check for free: thinking bound to an older tool set is dropped
    before the chat call, so no chat call is refused."""
    demo_refusals.expect("bound to a different conversation")
    h = make_harness([Reply((TextBlock("One."),)), Reply((TextBlock("Two."),))])
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="one", emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    h.agent.deps.registry = ToolRegistry([t for t in default_registry() if t.name != "delete_file"])
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="two",
        emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    assert done.stop_reason == "end_turn"
    assert [path for _, _, path in demo_refusals.seen] == ["/v1/messages/count_tokens"]
    assert len(h.server.requests) == 2  # every chat call went through
    assert not any(b["type"] == "thinking" for b in h.server.requests[1]["messages"][1]["content"])


# --- One count per turn: the follow-up call is sized from the first call's bill (agent/reservation.py) ---

async def test_a_tool_turn_asks_count_tokens_once_and_every_new_turn_counts_again(make_harness):
    h = make_harness([Reply((TextBlock("Looking."), ToolUseBlock("list_files", {"path": "."})), "tool_use"),
                      Reply((TextBlock("Nothing there."),)), Reply((TextBlock("Still nothing."),))])
    tid = await h.thread()
    for text in ("what files", "and now"):
        await h.agent.run_turn(owner="alice", thread_id=tid, text=text, emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    assert len(h.server.requests) == 3 and len(h.server.count_requests) == 2
    assert [len(c["messages"]) for c in h.server.count_requests] == [1, 5]  # each turn's first call
    assert h.agent.context.sizer.follow_ups == 1


def _stored(*contents: tuple[str, list[dict[str, Any]]]) -> list[StoredMessage]:
    return [StoredMessage(seq=i + 1, role=role, content=content, incomplete=False, created_at=1.0)
            for i, (role, content) in enumerate(contents)]


def _first_and_follow_up() -> tuple[list[StoredMessage], list[StoredMessage]]:
    """A second turn's first call (up to the user's request) and its follow-up (plus the answer and its tool
    result)."""
    follow = _stored(
        ("user", [{"type": "text", "text": "hello"}]),
        ("assistant", [{"type": "text", "text": "Hello."}]),
        ("user", [{"type": "text", "text": "what files"}]),
        ("assistant", [{"type": "text", "text": "Looking."},
                       {"type": "tool_use", "id": "toolu_1", "name": "list_files", "input": {"path": "."}}]),
        ("user", [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "notes/\ntodo.txt"}]))
    return follow[:3], follow


def test_the_follow_up_is_sized_from_the_bill_only_when_it_resends_exactly_what_the_first_call_sent(settings):
    tools = default_registry().api_definitions()
    choice = ModelChoice(settings.model, "medium")
    first, follow = _first_and_follow_up()
    sent = build_request(first, tools=tools)
    sizer = PromptSizer(settings, cast(ModelClient, None))
    sizer.observe("t", "turn-1", sent, choice, TokenUsage(input_tokens=3_000, cache_read_tokens=1_000,
                                                          output_tokens=700), "tool_use")
    last = sizer._billed["t"]
    request = build_request(follow, tools=tools)  # the breakpoints moved on: still the same prefix
    assert request.messages[:3] != sent.messages
    known = follow_up_tokens(last, "turn-1", request, choice)
    assert known == 4_000 + max(700, byte_estimate(request.messages[3])) + byte_estimate(request.messages[4:])
    fewer_tools = [t for t in tools if t["name"] != "delete_file"]
    summary = Summary(text="the user greeted and asked for files", covers_to_seq=3, messages=2)
    unsafe = {
        "another turn": follow_up_tokens(last, "turn-2", request, choice),
        "tools changed mid-turn": follow_up_tokens(last, "turn-1", build_request(follow, tools=fewer_tools), choice),
        "system changed": follow_up_tokens(last, "turn-1", ModelRequest(
            system=[{"type": "text", "text": "other"}], tools=request.tools, messages=request.messages), choice),
        "a summary in between": follow_up_tokens(last, "turn-1", build_request(follow, tools=tools, summary=summary),
                                                 choice),
        "another effort": follow_up_tokens(last, "turn-1", request, ModelChoice(settings.model, "high")),
        "another model": follow_up_tokens(last, "turn-1", request, ModelChoice("claude-haiku-5-5", "medium")),
        "an edited earlier message": follow_up_tokens(last, "turn-1", build_request(
            [*_stored(("user", [{"type": "text", "text": "hallo"}])), *follow[1:]], tools=tools), choice),
        "no answer after it": follow_up_tokens(last, "turn-1", sent, choice),
        "no previous call": follow_up_tokens(None, "turn-1", request, choice),
    }
    assert unsafe == dict.fromkeys(unsafe)


@pytest.mark.parametrize("stop", ["end_turn", "max_tokens", "refusal"])
def test_a_call_that_ends_its_turn_or_was_cut_leaves_nothing_to_reuse(settings, stop):
    first, _ = _first_and_follow_up()
    sizer = PromptSizer(settings, cast(ModelClient, None))
    sizer.observe("t", "turn-1", build_request(first, tools=[]), ModelChoice(settings.model, "medium"),
                  TokenUsage(input_tokens=3_000, output_tokens=10), stop)
    assert "t" not in sizer._billed


async def test_a_follow_up_whose_tools_changed_mid_turn_asks_count_tokens_again(agent_with, settings):
    """A user's tools can change while a turn runs (an MCP server connects, AgentDeps.registry_for): the
    follow-up's prompt is then not the first call's plus what was appended, so it is counted. The loop's own
    sizer against the counting endpoint over HTTP (a whole turn cannot show it: the demo, like the API, then
    refuses the turn's thinking as bound to the old tool set)."""
    agent, transport = agent_with("ok", [])
    sizer, choice = agent.context.sizer, ModelChoice(settings.model, "medium")
    tools = default_registry().api_definitions()
    first, follow = _first_and_follow_up()
    usage = TokenUsage(input_tokens=3_000, output_tokens=50)
    for follow_tools, counts in ((tools, 1), ([*tools[1:]], 2)):
        transport.counts = 0
        sent = build_request(first, tools=tools)
        await sizer.tokens("t", "turn-1", sent, choice)
        sizer.observe("t", "turn-1", sent, choice, usage, "tool_use")
        tokens, _ = await sizer.tokens("t", "turn-1", build_request(follow, tools=follow_tools), choice)
        assert transport.counts == counts, follow_tools == tools
        if counts == 1:  # sized from the bill: 3 000 prompt tokens + the answer + the result, plus the margin
            assert tokens >= 3_000 * 1.1


@pytest.mark.parametrize(("kind", "size"), [("cjk", "small"), ("base64", "small"), ("cjk", "large"),
                                             ("base64", "large")])
async def test_a_follow_up_after_a_token_dense_tool_result_still_reserves_at_least_its_bill(agent_with, db, kind,
                                                                                           size):
    """The follow-up's appended part is sized by bytes: a few KB of CJK (3 bytes a character) or of random base64
    read from a file must still be covered, with no margin at all, at 2.5 characters a token. Past
    FOLLOW_UP_MAX_ADDED_TOKENS (60 KB here) the follow-up is counted instead: a denser tokenizer than the
    estimate's could beat the bytes on a large result."""
    repeat, raw = (1_100, 44_000) if size == "large" else (50, 2_400)
    text = "東京の会議は金曜日に移動しました。" * repeat if kind == "cjk" else \
        base64.b64encode(random.Random(7).randbytes(raw)).decode()
    agent, transport = agent_with("ok", [billed("Reading.", ToolUseBlock("read_file", {"path": "data.txt"}),
                                                stop="tool_use"), billed("Read.")],
                                 count_tokens_margin_pct=0 if size == "small" else 10,  # a count needs its margin
                                 tool_result_max_chars=100_000)
    workspace = agent.deps.settings.workspaces_dir / "alice"
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "data.txt").write_text(text, encoding="utf-8")
    tid = (await thread_store.create_thread(db, owner="alice")).id
    await agent.run_turn(owner="alice", thread_id=tid, text="read data.txt", emit=deciding(agent, Recorder(),
                                                                                        APPROVE_ALL))
    first, follow_up = await chat_calls(db)
    if size == "small":
        assert transport.counts == 1 and agent.context.sizer.follow_ups == 1
    else:
        assert transport.counts == 2 and agent.context.sizer.follow_ups == 0
    prompt = follow_up.input_tokens + follow_up.cache_read_tokens + follow_up.cache_write_5m_tokens
    assert prompt - first.input_tokens > len(text) / CHARS_PER_TOKEN  # the whole file went back to the model
    assert follow_up.reserved_tokens - agent.deps.settings.max_tokens >= prompt
