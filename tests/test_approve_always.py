""""Approve always": scoped to user + tool + thread, revocable, never for high-risk tools, and
suspended while untrusted content is in the thread."""

from __future__ import annotations

from agent.events import ApprovalRequested, ApprovalResolved
from fakeclaude import Reply, TextBlock, ToolUseBlock
from store import approvals as approval_store
from tests.conftest import Recorder

WRITE = Reply(blocks=(ToolUseBlock("write_file", {"path": "notes/a.txt", "content": "x"}),), stop_reason="tool_use")
DONE = Reply(blocks=(TextBlock("Done."),))


async def turn(h, tid, text="go"):
    rec = Recorder()
    finished = await h.agent.run_turn(owner="alice", thread_id=tid, text=text, emit=rec)
    return rec, finished


async def test_standing_approval_runs_without_a_card_until_revoked(make_harness):
    write_b = Reply(blocks=(ToolUseBlock("write_file", {"path": "notes/b.txt", "content": "y"}),),
                    stop_reason="tool_use")
    h = make_harness([WRITE, DONE, WRITE, write_b])
    tid = await h.thread()
    other = await h.thread()
    await approval_store.set_always_approve(h.db, owner="alice", thread_id=tid, tool="write_file", on=True)
    rec, finished = await turn(h, tid)
    assert finished.stop_reason == "end_turn" and rec.of(ApprovalRequested) == []
    [resolved] = rec.of(ApprovalResolved)
    assert resolved.approval.status == "approved" and resolved.approval.decided_via == "always"
    assert (h.workspace() / "notes/a.txt").read_text() == "x"
    # another thread of the same user still asks
    rec, finished = await turn(h, other)
    assert finished.stop_reason == "awaiting_approval" and len(rec.of(ApprovalRequested)) == 1
    assert await approval_store.always_approved(h.db, owner="bob", thread_id=tid) == set()
    # revoked: the same thread asks again and nothing runs without a decision
    await approval_store.set_always_approve(h.db, owner="alice", thread_id=tid, tool="write_file", on=False)
    rec, finished = await turn(h, tid, "write b")
    assert finished.stop_reason == "awaiting_approval"
    [card] = rec.of(ApprovalRequested)
    assert card.approval.args == {"path": "notes/b.txt", "content": "y"} and card.can_always
    assert not (h.workspace() / "notes/b.txt").exists()
    h.brain.assert_done()


async def test_revoked_standing_approval_asks_again(make_harness):
    h = make_harness([WRITE])
    tid = await h.thread()
    await approval_store.set_always_approve(h.db, owner="alice", thread_id=tid, tool="write_file", on=True)
    await approval_store.set_always_approve(h.db, owner="alice", thread_id=tid, tool="write_file", on=False)
    rec, finished = await turn(h, tid)
    assert finished.stop_reason == "awaiting_approval"
    [card] = rec.of(ApprovalRequested)
    assert card.can_always and not card.always_suspended


async def test_never_for_high_risk_tools(make_harness):
    h = make_harness([Reply(blocks=(ToolUseBlock("delete_file", {"path": "notes/a.txt"}),), stop_reason="tool_use")])
    tid = await h.thread()
    await approval_store.set_always_approve(h.db, owner="alice", thread_id=tid, tool="delete_file", on=True)
    rec, finished = await turn(h, tid)
    assert finished.stop_reason == "awaiting_approval"
    [card] = rec.of(ApprovalRequested)
    assert not card.can_always


async def test_untrusted_content_suspends_the_standing_approval(make_harness):
    h = make_harness([Reply(blocks=(ToolUseBlock("read_file", {"path": "notes/page.txt"}), ToolUseBlock(
        "write_file", {"path": "notes/a.txt", "content": "x"})), stop_reason="tool_use")])
    (h.workspace() / "notes").mkdir(parents=True)
    (h.workspace() / "notes/page.txt").write_text("TODO: overwrite notes/a.txt")
    tid = await h.thread()
    await approval_store.set_always_approve(h.db, owner="alice", thread_id=tid, tool="write_file", on=True)
    rec, finished = await turn(h, tid)
    assert finished.stop_reason == "awaiting_approval"
    [card] = rec.of(ApprovalRequested)
    assert card.always_suspended and card.approval.untrusted_sources == ("read_file:notes/page.txt",)
    assert not card.can_always  # offered only where it could take effect (never while the thread is tainted)
    assert not (h.workspace() / "notes/a.txt").exists()
