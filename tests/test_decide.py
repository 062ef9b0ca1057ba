"""One way to decide (agent/decide.py): every road records through `Agent.decide` and moves the thread on."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from agent.approvals import Approved, Denied
from agent.decide import Recorded, Refused
from agent.events import ApprovalRequested, ApprovalResolved, TurnFinished
from fakeclaude import Reply, TextBlock, ToolUseBlock
from store import approvals as approval_store
from store.threads import NotFound
from tests.conftest import Recorder

ROOT = Path(__file__).resolve().parents[1]
WRITE = Reply(blocks=(ToolUseBlock("write_file", {"path": "a.txt", "content": "x"}),), stop_reason="tool_use")


async def suspended(h, text: str = "save") -> tuple[str, str]:
    tid = await h.thread()
    rec = Recorder()
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text=text, emit=rec)
    assert done.stop_reason == "awaiting_approval"
    [card] = rec.of(ApprovalRequested)
    return tid, card.approval.id


async def test_an_operator_decision_resumes_the_turn_in_the_chat_watching_the_thread(make_harness):
    h = make_harness([WRITE, Reply(blocks=(TextBlock("Saved."),))])
    tid, approval_id = await suspended(h)
    rec = Recorder()
    h.agent.sinks.remember(tid, rec)  # what ui/live.remember does when a chat shows the thread
    outcome = await h.agent.decide(approval_id=approval_id, decision=Approved(), by="root", how="console")
    assert isinstance(outcome, Recorded) and outcome.moving_on is not None
    await outcome.moving_on
    [finished] = [e for e in rec.events if isinstance(e, TurnFinished)]
    assert finished.stop_reason == "end_turn"  # the resumed turn rendered into the watching chat
    assert (h.workspace() / "a.txt").read_text() == "x"
    row = await approval_store.get_approval(h.db, approval_id=approval_id, viewer="alice")
    assert (row.status, row.decided_by, row.decided_via) == ("approved", "root", "console")
    h.brain.assert_done()


async def test_without_a_ui_the_decision_resumes_the_turn_in_the_background(make_harness):
    h = make_harness([WRITE, Reply(blocks=(TextBlock("Not saved."),))])
    _tid, approval_id = await suspended(h)
    outcome = await h.agent.decide(approval_id=approval_id, decision=Denied("not now"), by="alice", how="chat")
    assert isinstance(outcome, Recorded) and outcome.moving_on is not None
    finished = await outcome.moving_on
    assert isinstance(finished, TurnFinished) and finished.stop_reason == "end_turn"
    assert not (h.workspace() / "a.txt").exists()
    assert outcome.approval.reason == "not now" and outcome.approval.decided_via == "chat"
    h.brain.assert_done()


@pytest.mark.parametrize("second", [Approved(), Denied("changed my mind")])
async def test_a_decision_for_an_already_decided_approval_is_refused_and_wakes_nothing(make_harness, second):
    h = make_harness([WRITE, Reply(blocks=(TextBlock("Not saved."),))])
    _tid, approval_id = await suspended(h)
    first = await h.agent.decide(approval_id=approval_id, decision=Denied("no"), by="alice", how="chat")
    assert isinstance(first, Recorded) and first.moving_on is not None
    await first.moving_on
    requests = len(h.server.requests)
    for how, by in (("chat", "alice"), ("console", "root"), ("always", "alice")):
        again = await h.agent.decide(approval_id=approval_id, decision=second, by=by, how=how)
        assert isinstance(again, Refused) and "already rejected" in again.why
        assert again.approval.status == "rejected" and again.approval.reason == "no"
        assert h.agent.waking.waking == 0, "a refused decision started a resume"
    assert len(h.server.requests) == requests
    assert not (h.workspace() / "a.txt").exists()


async def test_a_user_cannot_approve_an_operator_routed_call_but_the_console_can(make_harness):
    h = make_harness([WRITE, Reply(blocks=(TextBlock("Saved."),))])
    h.agent.deps.route_for = lambda tool, args: "operator"
    _tid, approval_id = await suspended(h)
    refused = await h.agent.decide(approval_id=approval_id, decision=Approved(), by="alice", how="chat")
    assert isinstance(refused, Refused) and refused.approval.status == "pending"
    assert "operator" in refused.why
    with pytest.raises(NotFound):  # another user cannot even see it
        await h.agent.decide(approval_id=approval_id, decision=Denied("x"), by="bob", how="chat")
    ok = await h.agent.decide(approval_id=approval_id, decision=Approved(), by="root", how="console")
    assert isinstance(ok, Recorded) and ok.moving_on is not None
    await ok.moving_on
    assert (h.workspace() / "a.txt").read_text() == "x"


async def test_the_deadline_records_the_expiry_through_decide(make_harness):
    h = make_harness([WRITE, Reply(blocks=(TextBlock("It expired."),))], approval_timeout_s=1.0)
    tid = await h.thread()
    rec, finished = Recorder(), asyncio.Event()
    seen = []
    decide = h.agent.decisions.decide

    async def watching_decide(**kw):  # the real operation, observed
        seen.append((kw["how"], kw["by"]))
        return await decide(**kw)

    h.agent.decisions.decide = watching_decide

    async def sink(event):
        await rec(event)
        if isinstance(event, TurnFinished) and event.stop_reason == "end_turn":
            finished.set()

    await h.agent.run_turn(owner="alice", thread_id=tid, text="save", emit=sink)
    await asyncio.wait_for(finished.wait(), 10)
    assert seen == [("deadline", "system")]
    [resolved] = rec.of(ApprovalResolved)
    assert (resolved.approval.status, resolved.approval.decided_via) == ("expired", "system")
    assert not (h.workspace() / "a.txt").exists()


def _calls(path: Path) -> set[str]:
    """Dotted names of everything called in a module, e.g. "approval_store.decide", "rt.agent.decide"."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            names.add(ast.unparse(node.func))
    return names


def test_the_chat_the_console_and_the_deadline_decide_only_through_agent_decide():
    for module in sorted([*(ROOT / "ui").glob("*.py"), ROOT / "app.py", ROOT / "agent" / "loop.py",
                          ROOT / "agent" / "resuming.py", ROOT / "agent" / "deadlines.py"]):
        called = _calls(module)
        assert not {"approval_store.decide", "approval_store.record_decision"} & called, module
    assert "rt.agent.decide" in _calls(ROOT / "ui" / "chat.py")
    assert "rt.agent.decide" in _calls(ROOT / "ui" / "operator.py")
    assert "self.decisions.decide" in _calls(ROOT / "agent" / "resuming.py")  # the deadline's expiry
