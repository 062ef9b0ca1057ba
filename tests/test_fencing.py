"""Fencing (store/fencing.py): a process whose thread lease was taken over while it stalled cannot run a tool
or write the thread's history any more; its successor can. Two holders of one thread, on SQLite and on a real
PostgreSQL, each process with its own engine."""

from __future__ import annotations

import time

import pytest

from agent.leases import ThreadTurns
from store import approvals as approval_store
from store import cluster as cluster_store
from store import threads as thread_store
from store.db import Database
from store.fencing import Fence, LeaseLost

pytestmark = pytest.mark.both_backends


async def two_holders(db: Database, thread_id: str) -> tuple[Fence, Fence]:
    """pa takes the lease, stalls past dead_after_s, pb takes it over: (pa's fence, pb's fence)."""
    now = time.time()
    for p in ("pa", "pb"):
        await cluster_store.register_process(db, process_id=p, host="h", pid=1, now=now)
    a = await cluster_store.acquire_lease(db, thread_id=thread_id, holder="pa", alive_since=now - 15, now=now)
    later = now + 20
    await cluster_store.heartbeat(db, process_id="pb", now=later)  # pa's heartbeat stopped
    b = await cluster_store.acquire_lease(db, thread_id=thread_id, holder="pb", alive_since=later - 15, now=later)
    assert (a, b) == (1, 2)
    return Fence(thread_id, "pa", 1), Fence(thread_id, "pb", 2)


async def approved(db: Database, thread_id: str, use: str) -> str:
    a = await approval_store.request_approval(
        db, owner="alice", thread_id=thread_id, tool_use_id=use, tool="delete_file", args={"path": "x.txt"},
        args_digest="d-" + use, risk="deletes a file", untrusted_sources=[], route="user", timeout_s=600)
    await approval_store.decide(db, approval_id=a.id, decision="approved", decided_by="alice", via="chat")
    return a.id


async def test_the_former_holder_cannot_run_a_tool_nor_write_the_history(db: Database) -> None:
    tid = (await thread_store.create_thread(db, owner="alice")).id
    stale_db = Database(db.url)  # the stalled process: its own engine and connections
    try:
        await thread_store.append_message(db, owner="alice", thread_id=tid, role="user",
                                          content=[{"type": "text", "text": "delete x"}])
        approval_id = await approved(db, tid, "tu1")
        old, new = await two_holders(db, tid)
        # the stalled process wakes up and goes on with its turn: every write that matters is refused
        with pytest.raises(LeaseLost):
            await approval_store.claim_execution(stale_db, approval_id=approval_id, args_digest="d-tu1", fence=old)
        with pytest.raises(LeaseLost):
            await approval_store.start_tool_call(stale_db, thread_id=tid, tool_use_id="tu1", tool="delete_file",
                                                 args={"path": "x.txt"}, fence=old)
        with pytest.raises(LeaseLost):
            await thread_store.append_message(stale_db, owner="alice", thread_id=tid, role="assistant",
                                              content=[{"type": "text", "text": "stale answer"}], fence=old)
        with pytest.raises(LeaseLost):
            await thread_store.keep_partial(stale_db, owner="alice", thread_id=tid, text="stale partial", fence=old)
        assert [m.role for m in await thread_store.load_messages(db, owner="alice", thread_id=tid)] == ["user"]
        assert await approval_store.tool_outcomes(db, owner="alice", thread_id=tid) == {}
        # the approval it would have burned is still there for the current holder, which runs the tool once
        assert await approval_store.claim_execution(db, approval_id=approval_id, args_digest="d-tu1", fence=new)
        await approval_store.start_tool_call(db, thread_id=tid, tool_use_id="tu1", tool="delete_file",
                                             args={"path": "x.txt"}, fence=new)
        seq = await thread_store.keep_partial(db, owner="alice", thread_id=tid, text="streaming", fence=new)
        await thread_store.finish_message(db, owner="alice", thread_id=tid, seq=seq, fence=new,
                                          content=[{"type": "text", "text": "done"}])
        with pytest.raises(LeaseLost):  # nor can it overwrite its successor's streamed answer
            await thread_store.finish_message(stale_db, owner="alice", thread_id=tid, seq=seq, fence=old,
                                              content=[{"type": "text", "text": "forked"}], incomplete=True)
        messages = await thread_store.load_messages(db, owner="alice", thread_id=tid)
        assert [(m.role, m.content[0]["text"]) for m in messages] == [("user", "delete x"), ("assistant", "done")]
    finally:
        await stale_db.close()


async def test_two_processes_turns_the_stalled_one_writes_nothing_after_the_takeover(db: Database) -> None:
    """Through ThreadTurns, as the agent holds a thread: pa is inside its turn when pb takes the thread over."""
    tid = (await thread_store.create_thread(db, owner="alice")).id
    pb_db = Database(db.url)
    now = time.time()
    for p in ("pa", "pb"):
        await cluster_store.register_process(db, process_id=p, host="h", pid=1, now=now)
    pa = ThreadTurns(db, holder=lambda: "pa", alive_since=lambda: time.time() - 15)
    pb = ThreadTurns(pb_db, holder=lambda: "pb", alive_since=lambda: time.time() + 3600)  # sees pa as dead
    try:
        async with pa.hold(tid) as fence_a:
            assert pa.fence(tid) == fence_a
            await thread_store.append_message(db, owner="alice", thread_id=tid, role="user", fence=fence_a,
                                              content=[{"type": "text", "text": "hello"}])
            async with pb.hold(tid) as fence_b:  # pa stalled: pb takes over with the next epoch
                assert fence_b.epoch == fence_a.epoch + 1
                with pytest.raises(LeaseLost):
                    await thread_store.append_message(db, owner="alice", thread_id=tid, role="assistant",
                                                      fence=pa.fence(tid), content=[{"type": "text", "text": "a"}])
                await thread_store.append_message(pb_db, owner="alice", thread_id=tid, role="assistant",
                                                  fence=pb.fence(tid), content=[{"type": "text", "text": "b"}])
        assert pa.fence(tid) is None and pb.fence(tid) is None
        texts = [m.content[0]["text"] for m in await thread_store.load_messages(db, owner="alice", thread_id=tid)]
        assert texts == ["hello", "b"]
    finally:
        await pb_db.close()
