"""The approval gate fails closed: cards that fail to show, silent, misrouted, replayed or tampered decisions
run nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import text

from agent.approvals import Approved, args_digest
from agent.decide import Refused
from agent.events import ApprovalRequested, TurnFinished
from fakeclaude import Reply, TextBlock, ToolUseBlock
from store import approvals as approval_store
from store.threads import NotFound
from tests.conftest import Recorder, ScriptedApprover, deciding

VICTIM = "notes/victim.txt"
CALLS = {
    "write_file": {"path": VICTIM, "content": "PWNED"},
    "delete_file": {"path": VICTIM},
}


def _script(tool: str) -> list:
    return [Reply(blocks=(ToolUseBlock(tool, CALLS[tool]),), stop_reason="tool_use"), Reply(blocks=(TextBlock("ok"),))]


def _plant(h) -> int:
    p = h.workspace() / VICTIM
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("precious")
    return p.stat().st_mtime_ns


async def _executions(h, tid) -> int:
    outcomes = await approval_store.tool_outcomes(h.db, owner="alice", thread_id=tid)
    return sum(1 for o in outcomes.values() if o.tool in CALLS)


def _intact(h, mtime: int) -> bool:
    p = h.workspace() / VICTIM
    return p.exists() and p.read_text() == "precious" and p.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("tool", sorted(CALLS))
async def test_a_card_that_fails_to_render_runs_nothing(make_harness, tool):
    h = make_harness(_script(tool)[:1])
    tid, mtime = await h.thread(), _plant(h)
    rec = Recorder()
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="go",
                                  emit=deciding(h.agent, rec, ScriptedApprover({tool: RuntimeError("boom")})))
    h.brain.assert_done()
    assert done.stop_reason == "awaiting_approval"
    [card] = rec.of(ApprovalRequested)
    a = await approval_store.get_approval(h.db, approval_id=card.approval.id, viewer="alice")
    assert a.status == "pending" and a.decided_by is None and not a.executed  # undecided is not approved
    assert _intact(h, mtime) and await _executions(h, tid) == 0


@pytest.mark.parametrize("tool", sorted(CALLS))
async def test_a_card_nobody_answers_runs_nothing(make_harness, tool):
    h = make_harness(_script(tool), approval_timeout_s=1.0)  # the card must be shown before the deadline
    tid, mtime = await h.thread(), _plant(h)
    rec, finished = Recorder(), asyncio.Event()

    async def sink(event):
        await rec(event)
        if isinstance(event, TurnFinished) and event.stop_reason == "end_turn":
            finished.set()

    await h.agent.run_turn(owner="alice", thread_id=tid, text="go", emit=sink)
    await asyncio.wait_for(finished.wait(), 10)  # the deadline closes it
    h.brain.assert_done()
    assert _intact(h, mtime) and await _executions(h, tid) == 0
    [card] = rec.of(ApprovalRequested)
    a = await approval_store.get_approval(h.db, approval_id=card.approval.id, viewer="alice")
    assert a.status == "expired" and not a.executed
    late = await h.agent.decide(approval_id=a.id, decision=Approved(), by="alice", how="chat")
    assert isinstance(late, Refused) and late.approval.status == "expired"  # a decision after the deadline


async def test_decision_for_the_wrong_approval_runs_nothing(make_harness):
    h = make_harness([_script("delete_file")[0], _script("write_file")[0], Reply(blocks=(TextBlock("ok"),))])
    mtime = _plant(h)
    t_delete, t_write = await h.thread(), await h.thread()
    r1, r2 = Recorder(), Recorder()
    await h.agent.run_turn(owner="alice", thread_id=t_delete, text="go", emit=r1)
    [delete_card] = r1.of(ApprovalRequested)
    # An approver that answers the wrong card: asked about the write, it decides the delete (rejects it).
    misrouted = ScriptedApprover({})

    async def decide(approval):
        misrouted.asked.append(approval)
        await approval_store.decide(h.db, approval_id=delete_card.approval.id, decision="rejected",
                                    decided_by="alice", via="chat")
        return None

    misrouted.decide = decide  # type: ignore[method-assign]
    await h.agent.run_turn(owner="alice", thread_id=t_write, text="go", emit=deciding(h.agent, r2, misrouted))
    [write_card] = r2.of(ApprovalRequested)
    assert misrouted.asked[0].id == write_card.approval.id != delete_card.approval.id
    # bob cannot decide alice's card at all
    with pytest.raises(NotFound):
        await approval_store.decide(h.db, approval_id=write_card.approval.id, decision="approved",
                                    decided_by="bob", via="chat")
    # Resuming the write's thread with its card still pending runs nothing; the delete stays rejected.
    again = await h.agent.resume(owner="alice", thread_id=t_write, emit=Recorder())
    assert again is not None and again.stop_reason == "awaiting_approval"
    await h.agent.resume(owner="alice", thread_id=t_delete, emit=Recorder())
    h.brain.assert_done()
    assert _intact(h, mtime)
    assert await _executions(h, t_delete) == 0 and await _executions(h, t_write) == 0


async def test_replayed_decision_first_wins_and_the_tool_runs_once(make_harness):
    h = make_harness(_script("write_file"))
    tid = await h.thread()
    rec = Recorder()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="go", emit=rec)
    [card] = rec.of(ApprovalRequested)
    first = await approval_store.decide(h.db, approval_id=card.approval.id, decision="approved", decided_by="alice",
                                        via="chat")
    for decision in ("rejected", "approved"):
        replay = await approval_store.decide(h.db, approval_id=first.id, decision=decision, decided_by="alice",
                                             via="chat")
        assert replay.status == "approved" and replay.decided_at == first.decided_at
    results = await asyncio.gather(*(h.agent.resume(owner="alice", thread_id=tid, emit=Recorder())
                                     for _ in range(3)))
    assert sorted(r is None for r in results) == [False, True, True]
    assert await h.agent.resume(owner="alice", thread_id=tid, emit=Recorder()) is None
    h.brain.assert_done()
    assert await _executions(h, tid) == 1
    assert not await approval_store.claim_execution(h.db, approval_id=first.id,
                                                    args_digest=args_digest("write_file", CALLS["write_file"]))


@pytest.mark.parametrize("tamper", ["approval_row", "model_call"])
async def test_changed_args_digest_is_refused(make_harness, tamper):
    h = make_harness(_script("write_file"))
    tid, mtime = await h.thread(), _plant(h)
    rec = Recorder()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="go", emit=rec)
    [card] = rec.of(ApprovalRequested)
    other = {"path": "notes/harmless.txt", "content": "hi"}
    def tamper_with(conn) -> None:
        if tamper == "approval_row":  # the approver is shown other arguments than the call will run
            conn.execute(text("UPDATE approvals SET args_json = :a, args_digest = :d WHERE id = :i"),
                         {"a": json.dumps(other), "d": args_digest("write_file", other), "i": card.approval.id})
        else:  # the stored call is changed after the card was shown
            rows = conn.execute(text("SELECT seq, content_json FROM messages WHERE thread_id = :t"), {"t": tid}).all()
            for seq, content_json in rows:
                content = json.loads(content_json)
                for b in content:
                    if b.get("type") == "tool_use":
                        b["input"] = {"path": VICTIM, "content": "TAMPERED"}
                conn.execute(text("UPDATE messages SET content_json = :c WHERE thread_id = :t AND seq = :s"),
                             {"c": json.dumps(content), "t": tid, "s": seq})

    await h.db.transact(tamper_with)
    a = await approval_store.decide(h.db, approval_id=card.approval.id, decision="approved", decided_by="alice",
                                    via="chat")
    assert a.status == "approved"
    await h.agent.resume(owner="alice", thread_id=tid, emit=Recorder())
    h.brain.assert_done()
    assert _intact(h, mtime) and not (h.workspace() / "notes/harmless.txt").exists()
    assert await _executions(h, tid) == 0
    last_results = [b for m in h.brain.requests[-1]["messages"] if isinstance(m["content"], list)
                    for b in m["content"] if b.get("type") == "tool_result"]
    assert last_results[-1]["is_error"] and "do not match" in last_results[-1]["content"]
    ran = CALLS["write_file"] if tamper == "approval_row" else {"path": VICTIM, "content": "TAMPERED"}
    assert not await approval_store.claim_execution(h.db, approval_id=a.id, args_digest=args_digest("write_file", ran))
