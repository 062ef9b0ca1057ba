"""The console's push: the approval store's writes wake subscribers (store/changes.py), the pending stream
sends the new list at once, and a write by another process (no wake-up here) still arrives on the slow
re-check. A real SQLite file; "another process" is a plain sqlite3 connection to that file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from store import approvals as approval_store
from store import changes
from store import threads as thread_store
from store.db import Database
from store.values import Approval
from tools import Workspace
from ui.operator_feed import pending_events, pending_items


async def ask(db: Database, tid: str, use: str, tool: str = "delete_file") -> Approval:
    return await approval_store.request_approval(
        db, owner="alice", thread_id=tid, tool_use_id=use, tool=tool, args={"path": f"notes/{use}.txt"},
        args_digest="d-" + use, risk="deletes a file", untrusted_sources=[], route="operator", timeout_s=600)


async def test_every_approval_write_wakes_a_subscriber(db: Database) -> None:
    tid = (await thread_store.create_thread(db, owner="alice")).id
    with changes.notifier().subscribe(changes.APPROVALS) as wake:
        assert not await wake.wait(0.01)
        a = await ask(db, tid, "t1")
        assert await wake.wait(5)
        await approval_store.decide(db, approval_id=a.id, decision="rejected", decided_by="olga", via="console",
                                    as_operator=True)
        assert await wake.wait(5)
        await ask(db, tid, "t2")
        assert await wake.wait(5)
        await thread_store.delete_thread(db, owner="alice", thread_id=tid)  # closes t2
        assert await wake.wait(5)
    assert changes.notifier().subscribers(changes.APPROVALS) == 0


async def test_a_relay_gets_local_writes_and_a_remote_wake_up_is_not_relayed_again() -> None:
    sent: list[str] = []
    changes.notifier().add_relay(sent.append)
    try:
        with changes.notifier().subscribe("t") as wake:
            changes.notify("t")
            changes.notify("t", relay=False)  # as a LISTEN callback would
            assert await wake.wait(5)
    finally:
        changes.notifier().remove_relay(sent.append)
    assert sent == ["t"]


async def next_event(stream: AsyncIterator[str], timeout_s: float) -> tuple[str, Any]:
    while True:
        chunk = await asyncio.wait_for(anext(stream), timeout_s)
        if chunk.startswith("event: "):
            head, data = chunk.strip().split("\n", 1)
            return head.removeprefix("event: "), json.loads(data.removeprefix("data: "))


def stream_of(db: Database, tmp_path: Path, *, recheck_s: float, allowed: list[bool] | None = None
              ) -> AsyncIterator[str]:
    async def snapshot() -> list[dict[str, Any]]:
        return await pending_items(db, lambda owner: Workspace(tmp_path / owner))

    async def still_allowed() -> bool:
        return allowed is None or allowed[0]

    return pending_events(snapshot, still_allowed, recheck_s=recheck_s, keepalive_s=3600)


async def test_the_stream_sends_a_new_approval_and_a_decision_without_waiting_for_the_recheck(
        db: Database, tmp_path: Path) -> None:
    tid = (await thread_store.create_thread(db, owner="alice")).id
    stream = stream_of(db, tmp_path, recheck_s=3600)  # only a wake-up can make it send again
    try:
        assert await next_event(stream, 5) == ("pending", [])
        started = time.monotonic()
        waiting = asyncio.ensure_future(next_event(stream, 5))
        await asyncio.sleep(0)  # let the stream reach its wait before the write
        a = await ask(db, tid, "t1")
        kind, items = await waiting
        assert kind == "pending" and [i["id"] for i in items] == [a.id]
        assert items[0]["thread"] == tid and items[0]["args"] == {"path": "notes/t1.txt"}
        waiting = asyncio.ensure_future(next_event(stream, 5))
        await asyncio.sleep(0)
        await approval_store.decide(db, approval_id=a.id, decision="approved", decided_by="olga", via="console",
                                    as_operator=True)
        assert await waiting == ("pending", [])
        assert time.monotonic() - started < 5
    finally:
        await stream.aclose()
    assert changes.notifier().subscribers(changes.APPROVALS) == 0  # closing the stream unsubscribes


async def test_a_write_by_another_process_arrives_on_the_slow_recheck(db: Database, tmp_path: Path,
                                                                      settings: Any) -> None:
    tid = (await thread_store.create_thread(db, owner="alice")).id
    a = await ask(db, tid, "t1")
    stream = stream_of(db, tmp_path, recheck_s=0.2)
    try:
        assert [i["id"] for i in (await next_event(stream, 5))[1]] == [a.id]
        other = sqlite3.connect(settings.data_dir / "tollgate.db")  # no notifier in that "process"
        with other:
            other.execute("UPDATE approvals SET status='rejected', decided_at=?, decided_by='cli' WHERE id=?",
                          (time.time(), a.id))
        other.close()
        assert await next_event(stream, 5) == ("pending", [])
    finally:
        await stream.aclose()


async def test_the_stream_ends_once_the_reader_is_no_longer_an_operator(db: Database, tmp_path: Path) -> None:
    allowed = [True]
    stream = stream_of(db, tmp_path, recheck_s=3600, allowed=allowed)
    assert await next_event(stream, 5) == ("pending", [])
    allowed[0] = False
    changes.notify(changes.APPROVALS)
    assert await next_event(stream, 5) == ("denied", "operators only")
    assert [c async for c in stream] == []  # and nothing after it


async def test_the_stream_ends_when_the_server_is_closing(db: Database, tmp_path: Path) -> None:
    closing = asyncio.Event()

    async def snapshot() -> list[dict[str, Any]]:
        return await pending_items(db, lambda owner: Workspace(tmp_path / owner))

    async def allowed() -> bool:
        return True

    stream = pending_events(snapshot, allowed, recheck_s=3600, closing=closing)
    assert await next_event(stream, 5) == ("pending", [])
    rest = asyncio.ensure_future(asyncio.wait_for(_drain(stream), 5))
    await asyncio.sleep(0)
    closing.set()
    changes.notify(changes.APPROVALS, relay=False)  # what the signal handler does after setting the flag
    assert await rest == []


async def _drain(stream: AsyncIterator[str]) -> list[str]:
    return [c async for c in stream]
