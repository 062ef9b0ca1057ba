"""Append-only records: a thread its owner deletes disappears for the owner (and everyone else) through
every door, while its approvals, tool calls and model calls stay for operators until a purge past the
retention period removes them, and the purge itself is recorded."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import update

import cli
from agent.approvals import DeferredApprover
from agent.config import Settings
from agent.demo_model import Reply, TextBlock, ToolUseBlock
from store import approvals as approval_store
from store import audit, records
from store import steps as step_store
from store import threads as thread_store
from store import usage as usage_store
from store import users as user_store
from store.db import Database
from store.models import THREAD_DELETIONS
from store.threads import NotFound
from tests.conftest import Recorder
from ui.runtime import build_runtime

pytestmark = pytest.mark.both_backends  # the `db` tests run on SQLite and on PostgreSQL

WRITE = Reply(blocks=(ToolUseBlock("write_file", {"path": "notes/plan.txt", "content": "the plan"}),),
              stop_reason="tool_use")
DONE = Reply(blocks=(TextBlock("Saved."),))
DAY = 86_400.0


async def approved_write(h) -> tuple[str, str]:
    """alice asks, the card is approved in the chat, the write runs: (thread id, approval id)."""
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="save the plan", emit=Recorder(),
                           approver=DeferredApprover())
    [pending] = await approval_store.pending_approvals(h.db, owner="alice", thread_id=tid)
    await approval_store.decide(h.db, approval_id=pending.id, decision="approved", decided_by="alice", via="chat")
    finished = await h.agent.resume(owner="alice", thread_id=tid, emit=Recorder(), approver=DeferredApprover())
    assert finished is not None and finished.stop_reason == "end_turn"
    assert (h.workspace() / "notes/plan.txt").read_text() == "the plan"
    return tid, pending.id


async def hidden_from(db, user: str, tid: str, approval_id: str) -> None:
    """Every owner-facing door answers as if the thread never existed."""
    assert await thread_store.list_threads(db, owner=user) == []
    assert await thread_store.list_threads(db, owner=user, search="plan") == []
    assert await thread_store.owner_of(db, thread_id=tid) is None
    for attempt in (thread_store.get_thread(db, owner=user, thread_id=tid),
                    thread_store.load_messages(db, owner=user, thread_id=tid),
                    step_store.list_steps(db, owner=user, thread_id=tid),
                    thread_store.append_message(db, owner=user, thread_id=tid, role="user",
                                                content=[{"type": "text", "text": "still here?"}]),
                    thread_store.rename_thread(db, owner=user, thread_id=tid, title="back"),
                    thread_store.delete_thread(db, owner=user, thread_id=tid),
                    approval_store.get_approval(db, approval_id=approval_id, viewer=user),
                    approval_store.decide(db, approval_id=approval_id, decision="approved", decided_by=user,
                                          via="chat"),
                    approval_store.set_always_approve(db, owner=user, thread_id=tid, tool="write_file", on=True)):
        with pytest.raises(NotFound):
            await attempt
    assert not await thread_store.ensure_thread(db, owner=user, thread_id=tid)  # no resurrection either
    assert not await step_store.upsert_step(db, owner=user, thread_id=tid, step_id="s-new",
                                            values={"type": "user_message", "output": "hello again"})
    assert await approval_store.pending_approvals(db, owner=user, thread_id=tid) == []
    assert await approval_store.tool_outcomes(db, owner=user, thread_id=tid) == {}
    assert await approval_store.approval_for_tool_use(db, owner=user, thread_id=tid, tool_use_id="x") is None


async def test_deleting_a_thread_keeps_its_audit_for_operators_and_hides_it_from_everyone_else(make_harness):
    h = make_harness([WRITE, DONE])
    tid, approval_id = await approved_write(h)
    await step_store.upsert_step(h.db, owner="alice", thread_id=tid, step_id="s-1",
                                 values={"type": "user_message", "output": "save the plan"})
    await thread_store.delete_thread(h.db, owner="alice", thread_id=tid)

    # operators: the decision, the tool call and the model calls are all still there, marked deleted
    [decision] = await audit.decisions(h.db, user="alice")
    assert decision.id == approval_id and decision.status == "approved" and decision.executed
    assert decision.thread_deleted
    seen = await approval_store.get_approval(h.db, approval_id=approval_id, viewer="olga", viewer_is_operator=True)
    assert seen.thread_deleted and seen.owner == "alice"
    trace = await audit.thread_trace(h.db, thread_id=tid)
    assert [c["tool"] for c in trace["tool_calls"]] == ["write_file"]
    assert len(trace["model_calls"]) == 2 and len(trace["approvals"]) == 1
    owner, deleted_at = await thread_store.owner_and_deletion(h.db, thread_id=tid) or ("", None)
    assert owner == "alice" and deleted_at is not None
    assert len(await thread_store.load_messages(h.db, owner="alice", thread_id=tid, include_deleted=True)) == 4

    await hidden_from(h.db, "alice", tid, approval_id)
    await hidden_from(h.db, "bob", tid, approval_id)


async def test_deleting_a_thread_rejects_its_pending_approvals_and_an_approved_call_never_runs(make_harness):
    h = make_harness([WRITE, WRITE])
    waiting = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=waiting, text="save", emit=Recorder(),
                           approver=DeferredApprover())
    [pending] = await approval_store.pending_approvals(h.db, owner="alice", thread_id=waiting)
    await thread_store.delete_thread(h.db, owner="alice", thread_id=waiting)
    assert await approval_store.pending_approvals(h.db, owner=None) == []  # not left in the operators' queue
    after = await approval_store.get_approval(h.db, approval_id=pending.id, viewer="olga", viewer_is_operator=True)
    assert after.status == "rejected" and after.decided_by == "system" and "deleted" in (after.reason or "")

    # approved, then the thread deleted before the tool ran: the claim fails, nothing is written
    approved = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=approved, text="save", emit=Recorder(),
                           approver=DeferredApprover())
    [card] = await approval_store.pending_approvals(h.db, owner="alice", thread_id=approved)
    await approval_store.decide(h.db, approval_id=card.id, decision="approved", decided_by="alice", via="chat")
    await thread_store.delete_thread(h.db, owner="alice", thread_id=approved)
    assert not await approval_store.claim_execution(h.db, approval_id=card.id, args_digest=card.args_digest)
    assert not (h.workspace() / "notes/plan.txt").exists()


async def test_purge_after_retention_removes_the_records_keeps_spend_and_is_logged(make_harness):
    h = make_harness([WRITE, DONE])
    tid, _ = await approved_write(h)
    kept = await h.thread()
    await thread_store.append_message(h.db, owner="alice", thread_id=kept, role="user",
                                      content=[{"type": "text", "text": "keep me"}])
    spent = await usage_store.spent(h.db, scope="user_month", user="alice")
    assert spent > 0
    await thread_store.delete_thread(h.db, owner="alice", thread_id=tid)

    early = await records.purge_deleted(h.db, older_than_days=30, by="cli")  # deleted just now: not due
    assert early.threads == 0 and len((await audit.thread_trace(h.db, thread_id=tid))["approvals"]) == 1

    later = time.time() + 31 * DAY
    purged = await records.purge_deleted(h.db, older_than_days=30, by="cli", now=later)
    assert (purged.threads, purged.approvals, purged.tool_calls, purged.messages) == (1, 1, 1, 4)
    assert purged.model_calls_detached == 2
    assert await audit.decisions(h.db, user="alice") == []
    trace = await audit.thread_trace(h.db, thread_id=tid)
    assert trace == {"model_calls": [], "tool_calls": [], "approvals": []}
    assert await thread_store.owner_and_deletion(h.db, thread_id=tid) is None
    # the spend stays (the budget caps must not drop because a thread went), the live thread stays
    assert await usage_store.spent(h.db, scope="user_month", user="alice") == spent
    assert [t.id for t in await thread_store.list_threads(h.db, owner="alice")] == [kept]
    assert [(p.by, p.threads) for p in await records.purges(h.db)] == [("cli", 1), ("cli", 0)]
    with pytest.raises(ValueError):
        await records.purge_deleted(h.db, older_than_days=-1, by="cli")


async def _old_deleted_thread(data_dir, days_ago: float) -> str:
    db = Database.for_data_dir(data_dir)
    await db.create_schema()
    if await user_store.get_user(db, name="carol") is None:
        await user_store.add_user(db, name="carol", password="correct horse battery")
    tid = (await thread_store.create_thread(db, owner="carol", title="old")).id
    await thread_store.delete_thread(db, owner="carol", thread_id=tid)
    stmt = update(THREAD_DELETIONS).where(THREAD_DELETIONS.c.thread_id == tid)
    await db.transact(lambda conn: conn.execute(stmt.values(deleted_at=time.time() - days_ago * DAY)))
    await db.close()
    return tid


async def _purges(data_dir) -> list[tuple[str, int]]:
    db = Database.for_data_dir(data_dir)
    try:
        return [(p.by, p.threads) for p in await records.purges(db)]
    finally:
        await db.close()


def test_tollgate_db_purge_uses_the_retention_setting(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    monkeypatch.setenv("TOLLGATE_DATA_DIR", str(data_dir))
    monkeypatch.delenv("TOLLGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("TOLLGATE_RETENTION_DAYS", raising=False)
    asyncio.run(_old_deleted_thread(data_dir, days_ago=40))
    asyncio.run(_old_deleted_thread(data_dir, days_ago=10))
    assert cli.main(["db", "purge"]) == 1  # keep forever unless told otherwise
    assert "no retention period" in capsys.readouterr().err
    monkeypatch.setenv("TOLLGATE_RETENTION_DAYS", "30")
    assert cli.main(["db", "purge"]) == 0
    assert "purged 1 threads deleted over 30 days ago" in capsys.readouterr().out
    assert cli.main(["db", "purge", "--older-than-days", "5"]) == 0
    assert "purged 1 threads" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["db", "purge", "--older-than-days", "-1"])
    assert asyncio.run(_purges(data_dir)) == [("cli", 1), ("cli", 1)]


async def test_start_up_purges_past_retention_and_sets_the_limits(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    data_dir = tmp_path / "data"
    await _old_deleted_thread(data_dir, days_ago=8)
    kept = await _old_deleted_thread(data_dir, days_ago=1)
    rt = await build_runtime(Settings(data_dir=data_dir, retention_days=7, max_threads_per_user=5))
    try:
        assert [(p.by, p.threads) for p in await records.purges(rt.db)] == [("startup", 1)]
        assert await thread_store.owner_and_deletion(rt.db, thread_id=kept) is not None
        assert rt.db.limits.max_threads_per_user == 5 and rt.db.limits.max_message_chars == 20_000
    finally:
        await rt.close()
