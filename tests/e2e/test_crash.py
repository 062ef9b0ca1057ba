"""kill -9 of the real server at different points: the database stays intact, threads resume, and no
side effect runs twice. (The long randomised loop is bench/crash_loop.py.)"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from store import approvals as approval_store
from store import threads as thread_store
from store.db import Database
from tests.e2e.conftest import PASSWORD, Server, start_server, stop_server
from tests.e2e.test_isolation import APPROVAL_ID, Chat

SLOW_STREAM = {"TOLLGATE_DEMO_TOKENS_PER_SEC": "40", "TOLLGATE_PARTIAL_SAVE_INTERVAL_S": "0.2"}


async def wait_until(probe: Callable[[], Awaitable[str | None]], timeout: float = 30) -> str:
    """Re-check a condition on the store until it holds (the server gives no event for a row written)."""
    async with asyncio.timeout(timeout):
        while (value := await probe()) is None:
            await asyncio.sleep(0.05)
        return value


async def kept_partial(db: Database, thread_id: str) -> str | None:
    messages = await thread_store.load_messages(db, owner="alice", thread_id=thread_id)
    last = messages[-1]
    return last.content[0]["text"] if last.role == "assistant" and last.incomplete else None


def streamed_text(chat: Chat) -> str:
    """The text of the answer being streamed, as the client received it (stream start + tokens)."""
    start = next(d for e, d in reversed(chat.events) if e == "stream_start")
    tokens = [d["token"] for e, d in chat.events if e == "stream_token" and d["id"] == start["id"]]
    return start["output"] + "".join(tokens)


def kill9(server: Server) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()


@pytest.fixture
async def crashable(tmp_path: Path) -> AsyncIterator[Server]:
    servers: list[Server] = []
    srv = start_server(tmp_path / "data", SLOW_STREAM)
    srv.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    servers.append(srv)
    yield srv
    for s in servers:
        if s.proc.poll() is None:
            stop_server(s)


async def approve_via(chat: Chat, approval_id: str) -> int:
    action = {"name": "tollgate_approve", "payload": {"approval_id": approval_id}, "label": "Approve",
              "id": str(uuid.uuid4()), "forId": str(uuid.uuid4())}
    async with httpx.AsyncClient(base_url=chat.base, cookies=chat.cookies, timeout=60) as http:
        r = await http.post("/project/action", json={"sessionId": chat.session_id, "action": action})
        return r.status_code


async def test_kill_while_pending_and_mid_stream_then_resume(crashable: Server) -> None:
    data_dir = crashable.data_dir
    alice = Chat(crashable.url, "alice")
    await alice.login()
    await alice.connect()
    await alice.send("save a note called crash: survived")
    approval_id = (await alice.wait_for(APPROVAL_ID)).group(1)
    kill9(crashable)  # 1: while the approval is pending

    server = start_server(data_dir, SLOW_STREAM)
    try:
        db = Database.for_data_dir(data_dir)
        assert await db.integrity_ok()
        a = await approval_store.get_approval(db, approval_id=approval_id, viewer="alice")
        assert a.status == "pending"
        again = Chat(server.url, "alice")
        await again.login()
        await again.connect(thread_id=a.thread_id)
        await again.wait_for(re.compile(approval_id))  # the card is shown again after the restart
        assert await approve_via(again, approval_id) == 200
        assert await approve_via(again, approval_id) == 200  # a second click changes nothing
        note = server.workspace("alice") / "notes" / "crash.txt"
        assert note.read_text() == "survived"
        outcomes = await approval_store.tool_outcomes(db, owner="alice", thread_id=a.thread_id)
        assert [o.tool for o in outcomes.values()].count("write_file") == 1

        # 2: mid-stream — a long answer is being streamed when the process dies
        await again.send("tell me a story [long:400]")
        await again.wait_for(re.compile("stream_token|new_message.*story|\"streaming\": true"))
        kept = await wait_until(lambda: kept_partial(db, a.thread_id))  # the server stored what streamed so far
        kill9(server)
        server = start_server(data_dir)
        assert await db.integrity_ok()
        messages = await thread_store.load_messages(db, owner="alice", thread_id=a.thread_id)
        assert all(json.dumps(m.content) for m in messages)
        half = messages[-1]  # the half-streamed answer is kept, marked incomplete, at least as long as seen
        assert half.role == "assistant" and half.incomplete
        seen = streamed_text(again)
        assert half.content[0]["text"].startswith(kept) and (seen.startswith(kept) or kept.startswith(seen))
        async with httpx.AsyncClient(base_url=server.url, cookies=again.cookies, timeout=60) as http:
            shown = (await http.get(f"/project/thread/{a.thread_id}")).json()  # what reopening the thread shows
        assert any(kept in (st["output"] or "") and "incomplete" in st["output"] for st in shown["steps"])
        third = Chat(server.url, "alice")
        await third.login()
        await third.connect(thread_id=a.thread_id)
        await third.send("list my files")
        await third.wait_for(re.compile("crash.txt"))  # the thread still works after both crashes
        await db.close()
        for chat in (alice, again, third):
            await chat.close()
    finally:
        if server.proc.poll() is None:
            stop_server(server)
