"""A streaming answer is in the store before it ends (so kill -9 mid-stream keeps it), and its final
form replaces that row: one assistant message, never a duplicate, never in the model's context."""

from __future__ import annotations

import asyncio
import warnings

import pytest

from agent.events import AgentEvent, AnswerKept, AssistantMessageDone, TextDelta
from fakeclaude import Fault, Reply, TextBlock
from store import steps as step_store
from store import threads as thread_store
from tests.conftest import APPROVE_ALL, deciding
from tests.test_budget import calls

with warnings.catch_warnings():  # ui/history.py imports chainlit, whose own imports warn (pydantic v1 style)
    warnings.simplefilter("ignore", DeprecationWarning)
    from ui.history import INCOMPLETE_MARK, ChatHistory

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


# The chat's history (what a reload shows) gets the cut, stopped or complete answer from the agent itself:
# the renderer here renders nothing (a plain list collecting events), yet the history holds the answer.

async def _history_rows(h, tid: str) -> list[dict]:
    return [s for s in await step_store.list_steps(h.db, owner="alice", thread_id=tid)
            if s["type"] == "assistant_message"]


async def test_a_cut_answer_is_in_the_history_whatever_the_renderer_does(make_harness):
    h = make_harness([Reply(blocks=(TextBlock(STORY),), fault=Fault(kind="cut"))], partial_save_interval_s=1000)
    h.agent.deps.history = ChatHistory(h.db)
    tid = await h.thread()
    collected: list[AgentEvent] = []
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="tell me", emit=_collect(collected))
    assert done.stop_reason == "api_error"
    kept = (await thread_store.load_messages(h.db, owner="alice", thread_id=tid))[-1].content[0]["text"]
    [row] = await _history_rows(h, tid)
    assert row["output"] == kept + INCOMPLETE_MARK and STORY.startswith(kept.rstrip())
    assert {e.answer_id for e in collected if isinstance(e, TextDelta)} == {row["id"]}  # the message's id


async def test_a_stopped_answer_is_in_the_history_whatever_the_renderer_does(make_harness):
    h = make_harness([Reply(blocks=(TextBlock(STORY),))], partial_save_interval_s=1000)
    h.agent.deps.history = ChatHistory(h.db)
    tid = await h.thread()
    collected: list[AgentEvent] = []
    some_arrived = asyncio.Event()

    async def hung_renderer(event: AgentEvent) -> None:  # collects, then hangs mid-answer: the user stops
        collected.append(event)
        if sum(isinstance(e, TextDelta) for e in collected) == 5:
            some_arrived.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(h.agent.run_turn(owner="alice", thread_id=tid, text="tell me", emit=hung_renderer))
    await asyncio.wait_for(some_arrived.wait(), 30)
    task.cancel()  # the stop button
    with pytest.raises(asyncio.CancelledError):
        await task
    kept = (await thread_store.load_messages(h.db, owner="alice", thread_id=tid))[-1]
    shown = "".join(e.text for e in collected if isinstance(e, TextDelta))
    assert kept.role == "assistant" and kept.incomplete and kept.content[0]["text"] == shown
    [row] = await _history_rows(h, tid)
    assert row["output"] == shown + INCOMPLETE_MARK


async def test_a_stop_just_after_the_answer_arrived_still_stores_it(make_harness):
    """The stop lands once the last text is in: the answer is settled and stored, not lost (it was, when the
    stop reached the bookkeeping after the stream)."""
    h = make_harness([Reply(blocks=(TextBlock(STORY),))], partial_save_interval_s=1000)
    h.agent.deps.history = ChatHistory(h.db)
    tid = await h.thread()
    task: asyncio.Task | None = None
    seen: list[str] = []

    async def stop_at_the_end(event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            seen.append(event.text)
            if "".join(seen) == STORY and task is not None:
                task.cancel()

    task = asyncio.create_task(h.agent.run_turn(owner="alice", thread_id=tid, text="tell me", emit=stop_at_the_end))
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = await thread_store.load_messages(h.db, owner="alice", thread_id=tid)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert [b["text"] for b in stored[-1].content if b["type"] == "text"] == [STORY]
    [row] = await calls(h.db)
    assert row.status in ("settled", "released")  # never left reserved


async def test_the_complete_answer_replaces_the_kept_one_in_the_history(make_harness):
    h = make_harness([Reply(blocks=(TextBlock(STORY),))], partial_save_interval_s=0)
    h.agent.deps.history = ChatHistory(h.db)
    tid = await h.thread()
    sink = HoldsStream(h.db, tid)  # holds the stream until a kept version is stored
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="tell me", emit=sink)
    assert done.stop_reason == "end_turn" and sink.kept_texts
    [row] = await _history_rows(h, tid)
    assert row["output"] == STORY  # no second entry, no "incomplete" mark left behind


def _collect(into: list[AgentEvent]):
    async def sink(event: AgentEvent) -> None:
        into.append(event)

    return sink
