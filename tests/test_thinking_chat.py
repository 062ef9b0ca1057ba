"""Claude 5.x in the chat: explicit thinking and effort, thinking events before tool steps, thinking stored
and sent back as returned, every stop reason answered in plain words, and reservations that stay an upper
bound for the 5.x tokenizer."""

from __future__ import annotations

import json
import random

from agent.context import ModelRequest, build_request
from agent.events import AssistantMessageDone, Notice, TextDelta, ThinkingDelta, ToolStarted, TurnFinished
from fakeclaude import Reply, TextBlock, ToolUseBlock
from store import threads as thread_store
from tests.conftest import APPROVE_ALL, Recorder, deciding
from tools import default_registry


async def test_thinking_streams_before_the_tool_step_and_goes_back_unchanged(make_harness):
    h = make_harness([Reply((TextBlock("Let me look."), ToolUseBlock("list_files", {"path": "."})), "tool_use"),
                      Reply((TextBlock("You have none."),))])
    tid = await h.thread()
    rec = Recorder()
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="what files",
                                  emit=deciding(h.agent, rec, APPROVE_ALL))
    assert done.stop_reason == "end_turn"
    kinds = [type(e).__name__ for e in rec.events if isinstance(e, ThinkingDelta | TextDelta | ToolStarted)]
    # thinking (start, then text), the text, the progress update (start, text), then the tool step.
    first_tool = kinds.index("ToolStarted")
    assert kinds[0] == "ThinkingDelta" and "TextDelta" in kinds[:first_tool]
    assert kinds[first_tool - 1] == "ThinkingDelta"
    assert "".join(e.text for e in rec.of(ThinkingDelta) if e.block == 2) == "Next I'll use list_files."
    first, second = h.brain.requests
    assert first["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert first["output_config"] == {"effort": "medium"} and first["max_tokens"] == 4_096
    stored = await thread_store.load_messages(h.db, owner="alice", thread_id=tid)
    sent = second["messages"][1]["content"]
    assert [{k: v for k, v in b.items() if k != "cache_control"} for b in sent] == stored[1].content
    assert [b["type"] for b in sent] == ["thinking", "text", "thinking", "tool_use"]


async def test_a_refusal_names_its_category_and_the_thread_goes_on(make_harness):
    h = make_harness([Reply((TextBlock("No."),), "refusal",
                            stop_details={"type": "refusal", "category": "cyber", "explanation": None}),
                      Reply((TextBlock("Sure."),))])
    tid = await h.thread()
    rec = Recorder()
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="x", emit=deciding(h.agent, rec, APPROVE_ALL))
    assert done.stop_reason == "refusal"
    [notice] = [n for n in rec.of(Notice) if n.kind == "refusal"]
    assert "(category: cyber)" in notice.message
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="y",
                                  emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    assert done.stop_reason == "end_turn"


async def test_a_window_stop_is_marked_cut(make_harness):
    h = make_harness([Reply((TextBlock("partial"),), "model_context_window_exceeded")])
    rec = Recorder()
    done = await h.agent.run_turn(owner="alice", thread_id=await h.thread(), text="x",
                                  emit=deciding(h.agent, rec, APPROVE_ALL))
    assert done.stop_reason == "model_context_window_exceeded"
    assert rec.of(AssistantMessageDone)[-1].incomplete
    assert any("context window" in n.message for n in rec.of(Notice))
    assert isinstance(rec.events[-1], TurnFinished)


def test_the_reservation_estimate_is_an_upper_bound_at_two_and_a_half_characters_per_token():
    # bytes/3 was not: at 2.5 characters a token, 3,000 characters are 1,200 tokens, and bytes/3 said 1,000.
    rng = random.Random(7)
    words = ["the", "budget", "reservation", "is", "an", "upper", "bound", "tokenizer", "café", "naïve"]
    for _ in range(20):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3_000)))
        messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        request = build_request([], tools=default_registry().api_definitions())
        full = ModelRequest(system=request.system, tools=request.tools, messages=messages)
        chars = len(full.prefix_bytes().decode()) + len(json.dumps(messages, ensure_ascii=False))
        assert full.estimated_tokens() >= chars / 2.5


async def test_pause_turn_is_continued_as_is_and_bounded_by_the_call_cap(make_harness):
    h = make_harness([Reply((TextBlock("Part one."),), "pause_turn"), Reply((TextBlock("Part two."),)),
                      Reply((TextBlock("a"),), "pause_turn"), Reply((TextBlock("b"),), "pause_turn")],
                     max_calls_per_message=2)
    tid = await h.thread()
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="x",
                                  emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    assert done.stop_reason == "end_turn"
    paused = h.brain.requests[1]["messages"][-1]
    assert paused["role"] == "assistant"  # sent back as-is: continuing it is not a prefill
    assert all("cache_control" not in b for b in paused["content"] if b["type"] == "thinking")
    rec = Recorder()
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="y", emit=deciding(h.agent, rec, APPROVE_ALL))
    assert done.stop_reason == "call_cap" and any(n.kind == "call_cap" for n in rec.of(Notice))
    h.brain.assert_done()
