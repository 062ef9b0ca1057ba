"""Cut answers in the chat: max_tokens and model_context_window_exceeded are marked cut with a "Continue"
notice; Continue asks the model for the rest (a user message: the 5.x API refuses an assistant prefill),
sends the cut answer back unchanged (its thinking included), and after a window stop compresses first."""

from __future__ import annotations

from agent.demo_model import Reply, TextBlock
from agent.events import AssistantMessageDone, ContextCompressed, Notice, TextDelta
from agent.turn import CONTINUE_PROMPT
from store import threads as thread_store
from tests.conftest import APPROVE_ALL, Recorder

LONG = "The launch checklist has many steps, and each one matters for the release. " * 40  # ~760 tokens


def strip_cc(blocks: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in b.items() if k != "cache_control"} for b in blocks]


async def test_continue_after_max_tokens_asks_for_the_rest_and_sends_the_cut_answer_back(make_harness):
    h = make_harness([Reply((TextBlock(LONG),)), Reply((TextBlock("…and that is the rest."),))], max_tokens=300)
    tid = await h.thread()
    rec = Recorder()
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="explain the checklist", emit=rec,
                                  approver=APPROVE_ALL)
    assert done.stop_reason == "max_tokens"  # the demo cut it at 300 tokens, thinking included
    assert rec.of(AssistantMessageDone)[-1].incomplete
    [notice] = [n for n in rec.of(Notice) if n.kind == "max_tokens"]
    assert notice.continuable and not notice.retryable
    rec = Recorder()
    done = await h.agent.continue_cut(owner="alice", thread_id=tid, emit=rec, approver=APPROVE_ALL)
    assert done is not None and done.stop_reason == "end_turn"
    assert "".join(e.text for e in rec.of(TextDelta)) == "…and that is the rest."
    stored = await thread_store.load_messages(h.db, owner="alice", thread_id=tid)
    second = h.brain.requests[1]["messages"]
    assert second[-1]["content"][-1]["text"] == CONTINUE_PROMPT
    assert strip_cc(second[-2]["content"]) == stored[1].content  # the cut answer, thinking and all, unchanged
    assert [b["type"] for b in stored[1].content] == ["thinking", "text"]
    # Nothing left to continue: the newest answer ended normally.
    assert await h.agent.continue_cut(owner="alice", thread_id=tid, emit=Recorder(), approver=APPROVE_ALL) is None


async def test_continue_is_refused_once_the_user_moved_on(make_harness):
    h = make_harness([Reply((TextBlock(LONG),)), Reply((TextBlock("Hello."),))], max_tokens=300)
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="explain", emit=Recorder(), approver=APPROVE_ALL)
    await h.agent.run_turn(owner="alice", thread_id=tid, text="never mind", emit=Recorder(), approver=APPROVE_ALL)
    assert await h.agent.continue_cut(owner="alice", thread_id=tid, emit=Recorder(), approver=APPROVE_ALL) is None
    assert len(h.brain.requests) == 2


async def test_continue_after_a_window_stop_compresses_first(make_harness):
    turns = [Reply((TextBlock(f"Answer {i}. " * 20),)) for i in range(5)]
    h = make_harness([*turns, Reply((TextBlock("A long answer that"),), "model_context_window_exceeded"),
                      Reply((TextBlock("- the user asked five questions"),)),  # the summary
                      Reply((TextBlock("reached its end."),))])
    tid = await h.thread()
    for i in range(5):
        await h.agent.run_turn(owner="alice", thread_id=tid, text=f"question {i}", emit=Recorder(),
                               approver=APPROVE_ALL)
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="a long one", emit=Recorder(),
                                  approver=APPROVE_ALL)
    assert done.stop_reason == "model_context_window_exceeded"
    rec = Recorder()
    done = await h.agent.continue_cut(owner="alice", thread_id=tid, emit=rec, approver=APPROVE_ALL)
    assert done is not None and done.stop_reason == "end_turn"
    assert rec.of(ContextCompressed)  # far below the threshold: compressed because the window was reached
    summary, chat = h.brain.requests[-2:]
    assert summary["model"] == "claude-haiku-5-5" and summary["thinking"] == {"type": "disabled"}
    assert "[Summary of 6 earlier messages]" in str(chat["messages"][0]["content"])
    assert chat["messages"][-1]["content"][-1]["text"] == CONTINUE_PROMPT
    assert "".join(e.text for e in rec.of(TextDelta)) == "reached its end."
