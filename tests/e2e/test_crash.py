"""kill -9 of the real server at different points: the database stays intact, threads resume, and no
side effect runs twice. (The long randomised loop is bench/crash_loop.py.)"""

from __future__ import annotations

import json
import re
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from store import approvals as approval_store
from store import threads as thread_store
from store.db import Database
from tests.e2e.conftest import PASSWORD, Server, start_server, stop_server
from tests.e2e.test_isolation import APPROVAL_ID, Chat


def kill9(server: Server) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()


@pytest.fixture
async def crashable(tmp_path: Path) -> AsyncIterator[Server]:
    servers: list[Server] = []
    srv = start_server(tmp_path / "data", {"TOLLGATE_DEMO_TOKENS_PER_SEC": "40"})
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

    server = start_server(data_dir)
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
        kill9(server)
        server = start_server(data_dir)
        assert await db.integrity_ok()
        messages = await thread_store.load_messages(db, owner="alice", thread_id=a.thread_id)
        assert all(json.dumps(m.content) for m in messages)
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
