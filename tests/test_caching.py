"""Prompt caching through the real loop: byte-stable prefix, breakpoints, honest accounting, cache breaks."""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any

from sqlalchemy import select

from agent.cache_watch import CacheWatch, check_prefix_cacheable, min_cacheable_tokens
from agent.context import SYSTEM_PROMPT, build_request
from fakeclaude import PromptCache, Reply, TextBlock, ToolUseBlock, default_min_cacheable_tokens
from fakeclaude.tokens import prompt_blocks, request_prompt_tokens
from store.models import MODEL_CALLS
from store.usage import TokenUsage
from store.values import StoredMessage
from tests.conftest import APPROVE_ALL, Recorder, deciding
from tools import ToolRegistry, default_registry


def read_then_answer(path: str = "notes/a.txt") -> list[Reply]:
    return [Reply((TextBlock("Reading."), ToolUseBlock("read_file", {"path": path})), "tool_use"),
            Reply((TextBlock("It says hello."),))]


def controls(request: dict[str, Any]) -> list[tuple[str, int, int, dict[str, Any]]]:
    """Every cache_control in a request body as (section, message index, block index, control)."""
    found = [("tools", i, 0, t["cache_control"]) for i, t in enumerate(request.get("tools", []))
             if "cache_control" in t]
    found += [("system", 0, j, b["cache_control"]) for j, b in enumerate(request["system"]) if "cache_control" in b]
    for i, m in enumerate(request["messages"]):
        found += [("messages", i, j, b["cache_control"]) for j, b in enumerate(m["content"]) if "cache_control" in b]
    return found


async def usage_rows(h: Any, purpose: str = "chat") -> list[TokenUsage]:
    c = MODEL_CALLS.c
    async with h.db.read() as conn:
        rows = await conn.execute(select(c.input_tokens, c.output_tokens, c.cache_write_5m_tokens,
                                         c.cache_write_1h_tokens, c.cache_read_tokens)
                                  .where(c.purpose == purpose).order_by(c.id))
        return [TokenUsage(*r) for r in rows]


async def three_calls(h: Any) -> str:
    h.workspace().joinpath("notes").mkdir(parents=True)
    h.workspace().joinpath("notes/a.txt").write_text("hello " * 200)
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="read a", emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    await h.agent.run_turn(owner="alice", thread_id=tid, text="thanks", emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    h.brain.assert_done()
    return tid


async def test_tools_and_system_are_byte_identical_on_every_call(make_harness):
    h = make_harness([*read_then_answer(), Reply((TextBlock("You're welcome."),))])
    await three_calls(h)
    assert len(h.server.requests) == 3
    # Key order as received, not sorted: the real cache keys on the bytes the SDK sends.
    tools = {json.dumps(r["tools"], ensure_ascii=False) for r in h.server.requests}
    system = {json.dumps(r["system"], ensure_ascii=False) for r in h.server.requests}
    assert len(tools) == 1 and len(system) == 1
    assert h.server.requests[0]["system"][0]["text"] == SYSTEM_PROMPT


async def test_breakpoints_sit_on_system_the_previous_end_and_the_newest_block(make_harness):
    h = make_harness([*read_then_answer(), Reply((TextBlock("You're welcome."),))])
    await three_calls(h)
    first, second, third = h.server.requests
    eph = {"type": "ephemeral"}
    assert controls(first) == [("system", 0, 0, eph), ("messages", 0, 0, eph)]
    last = len(second["messages"][2]["content"]) - 1
    assert controls(second) == [("system", 0, 0, eph), ("messages", 0, 0, eph), ("messages", 2, last, eph)]
    n = len(third["messages"])
    assert [c[:2] for c in controls(third)] == [("system", 0), ("messages", n - 3), ("messages", n - 1)]
    assert all(len(controls(r)) <= 4 for r in h.server.requests)


async def test_one_hour_ttl_is_sent_on_every_breakpoint(make_harness):
    h = make_harness(read_then_answer(), cache_ttl="1h")
    h.workspace().joinpath("notes").mkdir(parents=True)
    h.workspace().joinpath("notes/a.txt").write_text("hello")
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="read a", emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    assert all(c[3] == {"type": "ephemeral", "ttl": "1h"} for r in h.server.requests for c in controls(r))
    [first, second] = await usage_rows(h)
    assert first.cache_write_1h_tokens > 0 and first.cache_write_5m_tokens == 0
    assert second.cache_read_tokens == first.cache_write_1h_tokens


def test_strategies_place_breakpoints_as_configured():
    msgs = [StoredMessage(0, "user", [{"type": "text", "text": "hi"}], False, 0.0),
            StoredMessage(1, "assistant", [{"type": "text", "text": "hello"}], False, 0.0),
            StoredMessage(2, "user", [{"type": "text", "text": "again"}], False, 0.0)]
    tools = default_registry().api_definitions()

    def count(strategy: str) -> int:
        r = build_request(msgs, tools=tools, strategy=strategy)
        return len(controls({"tools": r.tools, "system": r.system, "messages": r.messages}))

    assert (count("none"), count("system"), count("incremental")) == (0, 1, 3)
    assert build_request(msgs, tools=tools).prefix_bytes() == build_request(msgs[:1], tools=tools).prefix_bytes()


def test_tools_and_system_clear_the_default_models_minimum():
    r = build_request([], tools=default_registry().api_definitions())
    body = {"tools": r.tools, "system": r.system, "messages": []}
    tokens = request_prompt_tokens(body)
    # Measured with the demo server's estimator, against its minimum for the default model (2048).
    assert tokens >= default_min_cacheable_tokens("claude-sonnet-5-5") == min_cacheable_tokens("claude-sonnet-5-5")
    assert check_prefix_cacheable(r, "claude-sonnet-5-5")
    assert "trust=\"untrusted\"" in SYSTEM_PROMPT and "[Summary of N earlier messages]" in SYSTEM_PROMPT


async def test_start_up_logs_when_caching_cannot_apply(make_harness, caplog):
    with caplog.at_level(logging.INFO, logger="tollgate.cache"):
        make_harness([], model="claude-haiku-4-5")  # minimum 4096 tokens: our prefix is below it
    assert any("caching cannot apply" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tollgate.cache"):
        make_harness([])
    assert not any("caching cannot apply" in r.getMessage() for r in caplog.records)


async def test_each_call_reads_what_the_previous_cached_and_writes_only_the_new_blocks(make_harness):
    h = make_harness([*read_then_answer(), Reply((TextBlock("You're welcome."),))])
    await three_calls(h)
    rows = await usage_rows(h)
    reqs = h.server.requests
    # What the loop stored is exactly what an independent cache computes from the received bodies.
    fresh = PromptCache()
    for row, body in zip(rows, reqs, strict=True):
        u = fresh.account(body)
        assert (row.input_tokens, row.cache_write_5m_tokens, row.cache_read_tokens) == (
            u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens)
        assert row.prompt_tokens == request_prompt_tokens(body)
    assert rows[0].cache_read_tokens == 0 and rows[0].input_tokens == 0
    for before, after in itertools.pairwise(rows):
        assert after.cache_read_tokens == before.cache_read_tokens + before.cache_write_5m_tokens
        assert after.input_tokens == 0
    # By hand: call 2 writes only the blocks new since call 1 (the answer and the tool result).
    new_blocks = prompt_blocks(reqs[1])[len(prompt_blocks(reqs[0])):]
    assert rows[1].cache_write_5m_tokens == sum(b.tokens for b in new_blocks)
    assert h.agent.context.watch.breaks == 0


async def test_a_large_tool_batch_does_not_break_the_cache(make_harness):
    # 12 calls + 12 results + text: more than the 20-block lookback between two breakpoints.
    calls = tuple(ToolUseBlock("list_files", {"path": "."}, id=f"toolu_{i:02d}") for i in range(12))
    h = make_harness([Reply((TextBlock("Looking."), *calls), "tool_use"), Reply((TextBlock("Done."),))])
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="list", emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    first, second = await usage_rows(h)
    assert second.cache_read_tokens == first.cache_read_tokens + first.cache_write_5m_tokens
    assert h.agent.context.watch.breaks == 0


async def test_an_evicted_cache_is_counted_as_a_break(make_harness, caplog):
    h = make_harness([Reply((TextBlock("One."),)), Reply((TextBlock("Two."),))])
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="one", emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    h.server.cache.clear()
    with caplog.at_level(logging.WARNING, logger="tollgate.cache"):
        await h.agent.run_turn(owner="alice", thread_id=tid, text="two",
                               emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    watch = h.agent.context.watch
    assert (watch.breaks, watch.rewrites) == (1, 0)
    assert watch.events[-1].read == 0 and "unknown" in watch.events[-1].reason
    assert any("cache break" in r.getMessage() for r in caplog.records)


async def test_a_changed_tool_set_is_a_break_with_its_reason(make_harness, demo_refusals):
    # Changing the tools also unbinds the thread's thinking: the API refuses it once, the agent drops the
    # thinking of completed turns (allowed) and the same call goes through; later calls do not retry.
    demo_refusals.expect("bound to a different conversation")
    h = make_harness([Reply((TextBlock("One."),)), Reply((TextBlock("Two."),)), Reply((TextBlock("Three."),))])
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="one", emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    full = default_registry()
    h.agent.deps.registry = ToolRegistry([t for t in full if t.name != "delete_file"])
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="two",
                                  emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    assert done.stop_reason == "end_turn"
    watch = h.agent.context.watch
    assert watch.breaks == 1 and watch.events[-1].reason.startswith("prefix changed")
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="three",
                                  emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    assert done.stop_reason == "end_turn" and len(demo_refusals.seen) == 1
    h.brain.assert_done()


def test_break_reasons_ttl_and_history():
    now = [0.0]
    watch = CacheWatch("5m", clock=lambda: now[0])
    tools = default_registry().api_definitions()
    one = [StoredMessage(0, "user", [{"type": "text", "text": "hi"}], False, 0.0)]
    two = [*one, StoredMessage(1, "assistant", [{"type": "text", "text": "yo"}], False, 0.0),
           StoredMessage(2, "user", [{"type": "text", "text": "more"}], False, 0.0)]
    cached = TokenUsage(cache_write_5m_tokens=3000)
    assert watch.observe("t", build_request(one, tools=tools), cached) is None
    now[0] = 301.0
    event = watch.observe("t", build_request(two, tools=tools), TokenUsage(cache_write_5m_tokens=3100))
    assert event is not None and event.kind == "break" and event.reason.startswith("TTL expired")
    edited = [two[0], StoredMessage(1, "assistant", [{"type": "text", "text": "changed"}], False, 0.0), two[2]]
    event = watch.observe("t", build_request(edited, tools=tools), TokenUsage(cache_read_tokens=2400))
    assert event is not None and event.reason.startswith("earlier messages changed")
    # Reading at least what was cached is not a break; other threads are separate.
    assert watch.observe("t", build_request(edited, tools=tools), TokenUsage(cache_read_tokens=3100)) is None
    assert watch.observe("u", build_request(one, tools=tools), TokenUsage()) is None
    assert watch.breaks == 2
