"""A streaming answer is in the store before it ends (so kill -9 mid-stream keeps it), and its final
form replaces that row: one assistant message, never a duplicate, never in the model's context."""

from __future__ import annotations

import asyncio

from agent.events import AgentEvent, AnswerKept, AssistantMessageDone, TextDelta
from fakeclaude import Fault, Reply, TextBlock
from store import threads as thread_store
from tests.conftest import APPROVE_ALL, deciding

STORY = " ".join(f"word{i}" for i in range(300))


class HoldsStream:
    """Blocks the stream at the `hold_at`-th delta until the answer so far is in the store, then
    records what the store held at that moment (the stream cannot move while we look)."""

    def __init__(self, db, thread_id: str, hold_at: int = 5) -> None:
        self.db, self.thread_id, self.hold_at = db, thread_id, hold_at
        self.deltas = 0
        self.kept = asyncio.Event()
        self.kept_texts: list[str] = []
        self.seen_in_store: list = []
        self.events: list[AgentEvent] = []

    async def __call__(self, event: AgentEvent) -> None:
        self.events.append(event)
        if isinstance(event, AnswerKept):
            self.kept_texts.append(event.text)
            self.kept.set()
        if isinstance(event, TextDelta):
            self.deltas += 1
            if self.deltas == self.hold_at:
                await self.kept.wait()
                self.seen_in_store = await thread_store.load_messages(self.db, owner="alice",
                                                                      thread_id=self.thread_id)


async def test_answer_is_stored_while_streaming_and_finished_in_place(make_harness):
    h = make_harness([Reply(blocks=(TextBlock(STORY),))], partial_save_interval_s=0)
    tid = await h.thread()
    sink = HoldsStream(h.db, tid)
    done = await asyncio.wait_for(
        h.agent.run_turn(owner="alice", thread_id=tid, text="tell me", emit=deciding(h.agent, sink, APPROVE_ALL)), 30)
    assert done.stop_reason == "end_turn"

    # Mid-stream: the answer so far was a stored, incomplete assistant message.
    mid = sink.seen_in_store[-1]
    assert mid.role == "assistant" and mid.incomplete
    assert mid.content == [{"type": "text", "text": sink.kept_texts[0]}]
    assert STORY.startswith(sink.kept_texts[0]) and len(sink.kept_texts[0]) < len(STORY)

    # At the end: the same row holds the whole answer, complete; no second assistant message.
    stored = await thread_store.load_messages(h.db, owner="alice", thread_id=tid)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[-1].seq == mid.seq and not stored[-1].incomplete
    assert [b for b in stored[-1].content if b["type"] != "thinking"] == [{"type": "text", "text": STORY}]
    # No save lands after the answer ended (it would overwrite the finished text).
    done_at = next(i for i, e in enumerate(sink.events) if isinstance(e, AssistantMessageDone))
    assert not any(isinstance(e, AnswerKept) for e in sink.events[done_at:])


async def test_kept_partial_is_left_out_of_the_next_call(make_harness):
    cut = Reply(blocks=(TextBlock(STORY),), fault=Fault(kind="cut"))
    h = make_harness([cut, Reply(blocks=(TextBlock("Fresh answer."),))], partial_save_interval_s=0)
    tid = await h.thread()
    sink = HoldsStream(h.db, tid)
    first = await h.agent.run_turn(owner="alice", thread_id=tid, text="tell me",
                                   emit=deciding(h.agent, sink, APPROVE_ALL))
    assert first.stop_reason == "api_error"
    stored = await thread_store.load_messages(h.db, owner="alice", thread_id=tid)
    assert [(m.role, m.incomplete) for m in stored] == [("user", False), ("assistant", True)]
    assert STORY.startswith(stored[-1].content[0]["text"].rstrip())

    await h.agent.run_turn(owner="alice", thread_id=tid, text="again", emit=deciding(h.agent, sink, APPROVE_ALL))
    second_request = h.server.requests[-1]["messages"]
    assert all(m["role"] == "user" for m in second_request)  # the half answer is history, not context
    assert "word1 " not in str(second_request)
