"""Records and quotas against the real server, browserless (python-socketio and httpx with real cookies):
oversized messages and forged steps are refused before storing and the user is told why; a thread its
owner deletes is gone for the owner through every door while operators keep its audit; the budget
editor refuses every bad amount with a 400 that names the field and changes nothing."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select

from store import approvals as approval_store
from store import steps as step_store
from store import threads as thread_store
from store.db import Database
from store.models import MESSAGES, THREADS, UI_STEPS
from store.users import user_id_of
from tests.e2e.conftest import PASSWORD, Server
from tests.e2e.test_isolation import APPROVAL_ID, Chat


@pytest.fixture
async def db(server: Server) -> AsyncIterator[Database]:
    database = Database.for_data_dir(server.data_dir)
    yield database
    await database.close()


@pytest.fixture(scope="module")
def olga(server: Server) -> str:
    if "olga" not in server.cli("users", "list"):
        server.cli("users", "add", "olga", "--password-stdin", "--role", "operator", stdin=PASSWORD + "\n")
    return "olga"


async def stored_sizes(db: Database, owner: str) -> tuple[int, int]:
    """The largest step and message stored in any of the owner's threads, in characters (0 if none)."""
    own = select(THREADS.c.id).where(THREADS.c.owner_id == user_id_of(owner))
    async with db.read() as conn:
        step = (await conn.execute(select(func.max(func.length(UI_STEPS.c.output) + func.length(UI_STEPS.c.input)))
                                   .where(UI_STEPS.c.thread_id.in_(own)))).scalar_one()
        message = (await conn.execute(select(func.max(func.length(MESSAGES.c.content_json)))
                                      .where(MESSAGES.c.thread_id.in_(own)))).scalar_one()
    return int(step or 0), int(message or 0)


async def send_step(chat: Chat, text: str, *, kind: str = "user_message") -> None:
    chat.thread_id = chat.thread_id or str(uuid.uuid4())
    await chat.sio.emit("client_message", {"message": {
        "id": str(uuid.uuid4()), "threadId": chat.thread_id, "name": chat.user, "type": kind, "output": text,
        "createdAt": datetime.now(UTC).isoformat()}, "fileReferences": None})


async def test_oversized_messages_and_forged_steps_are_refused_before_storing(server: Server, db: Database) -> None:
    alice = Chat(server.url, "alice", thread_id=str(uuid.uuid4()))
    await alice.login()
    await alice.connect(thread_id=alice.thread_id)  # the session's thread is the one the client names
    await send_step(alice, "x" * 50_000)  # through the chat box's own event
    await alice.wait_for(re.compile(r"Your message is 50,000 characters; the limit is 20,000\. It was not saved"))
    # A socket client picks the step's type: a 900 kB "assistant" step, 20 times
    for _ in range(20):
        await send_step(alice, "y" * 900_000, kind="assistant_message")
    await alice.wait_for(re.compile(r"Your message is 900,000 characters; the limit is 20,000\. It was not saved"))
    async with asyncio.timeout(60):  # every one of the 21 messages was handled (refused) by the server
        while sum(e == "task_end" for e, _ in alice.events) < 21:
            alice.changed.clear()
            await alice.changed.wait()
    # editing is off in the config, but chainlit's handler does not check: rewrite a server message to 900 kB
    server_ids = [d["id"] for e, d in alice.events if e == "new_message" and d.get("type") != "user_message"]
    await alice.sio.emit("edit_message", {"message": {"id": server_ids[0], "output": "z" * 900_000}})
    await send_step(alice, "")  # then one more event; its end means the edit (sent first) was handled too
    async with asyncio.timeout(60):
        while sum(e == "task_end" for e, _ in alice.events) < 22:
            alice.changed.clear()
            await alice.changed.wait()
    assert await thread_store.owner_of(db, thread_id=alice.thread_id) == "alice"
    steps = await step_store.list_steps(db, owner="alice", thread_id=alice.thread_id)
    # none of the 21 was kept, not even cut: what is stored is the server's own short answers (the refusals)
    assert steps and all(len(s["output"]) + len(s["input"]) < 1_000 for s in steps)
    assert all(s["output"] == "" for s in steps if s["type"] == "user_message")
    assert any("It was not saved" in s["output"] for s in steps)
    step, message = await stored_sizes(db, "alice")
    print(f"stored for 50,000 + 20 x 900,000 characters sent: largest step {step}, largest message {message}")
    assert step <= 20_000 and message <= 20_000
    assert "x" * 20_001 not in json.dumps(alice.events[-5:])  # nothing echoed back either
    await alice.close()


async def test_a_deleted_thread_is_gone_for_its_owner_and_kept_for_operators(server: Server, db: Database,
                                                                              olga: str) -> None:
    alice = Chat(server.url, "alice")
    await alice.login()
    await alice.connect()
    await alice.send("save a note called audited: kept for the audit")
    approval_id = (await alice.wait_for(APPROVAL_ID)).group(1)
    thread = (await approval_store.get_approval(db, approval_id=approval_id, viewer="alice")).thread_id
    async with httpx.AsyncClient(base_url=server.url, cookies=alice.cookies) as http:
        action = {"name": "tollgate_approve", "payload": {"approval_id": approval_id}, "label": "Approve",
                  "id": str(uuid.uuid4()), "forId": str(uuid.uuid4())}
        assert (await http.post("/project/action", json={"sessionId": alice.session_id, "action": action})).is_success
        await alice.wait_for(re.compile(r"wrote \d+ bytes to notes/audited\.txt"))
        assert (await http.request("DELETE", "/project/thread", json={"threadId": thread})).status_code == 200

        # the owner: not listed, not found by search, cannot be opened, renamed or deleted again
        listed = await http.post("/project/threads", json={"pagination": {"first": 50}, "filter": {}})
        assert thread not in {t["id"] for t in listed.json()["data"]}
        found = await http.post("/project/threads", json={"pagination": {"first": 50}, "filter": {"search": "audited"}})
        assert found.json()["data"] == []
        assert (await http.get(f"/project/thread/{thread}")).status_code in (401, 403, 404)
        assert (await http.put("/project/thread", json={"threadId": thread, "name": "back"})).status_code != 200
    # ... nor resumed and written to over the socket
    again = Chat(server.url, "alice", token=alice.token)
    await again.connect(thread_id=thread)
    await again.sio.emit("client_message", {"message": {
        "id": str(uuid.uuid4()), "threadId": thread, "name": "alice", "type": "user_message",
        "output": "still there?", "createdAt": datetime.now(UTC).isoformat()}, "fileReferences": None})
    async with asyncio.timeout(30):
        while not any(e == "task_end" for e, _ in again.events):
            again.changed.clear()
            await again.changed.wait()
    kept = await thread_store.load_messages(db, owner="alice", thread_id=thread, include_deleted=True)
    assert all("still there?" not in json.dumps(m.content) for m in kept)
    await again.close()
    await alice.close()

    # operators: the approval (marked deleted), the tool call and the model calls are all there
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/login", data={"username": olga, "password": PASSWORD})
        http.cookies.set("access_token", r.cookies["access_token"])
        audit = (await http.get("/operator/api/audit", params={"user": "alice"})).json()["rows"]
        [row] = [a for a in audit if a["id"] == approval_id]
        assert row["status"] == "approved" and row["thread_deleted"] is True
        trace = (await http.get(f"/operator/api/thread/{thread}/trace")).json()
        assert [c["tool"] for c in trace["tool_calls"]] == ["write_file"] and len(trace["model_calls"]) >= 2
        page = await http.get(f"/operator/thread/{thread}")
        assert page.status_code == 200 and "Deleted by its owner" in page.text
    a = await approval_store.get_approval(db, approval_id=approval_id, viewer=olga, viewer_is_operator=True)
    assert a.executed and a.thread_deleted


BAD_AMOUNTS = ['"NaN"', "NaN", '"Infinity"', "Infinity", '"-Infinity"', '"-1"', "-1", '"1e30"', "1e30",
               '"1000000.01"', '"abc"', '""', '"  "', "null", "true", "[]", "{}"]


@pytest.mark.parametrize("bad", BAD_AMOUNTS)
async def test_the_budget_editor_refuses_bad_amounts_with_a_400_naming_the_field(server: Server, olga: str,
                                                                                 bad: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/login", data={"username": olga, "password": PASSWORD})
        http.cookies.set("access_token", r.cookies["access_token"])

        async def budgets() -> list[dict[str, str]]:
            return sorted((await http.get("/operator/api/budgets")).json(), key=lambda b: b["user"])

        before = await budgets()
        headers = {"Content-Type": "application/json"}
        for body, field in ((f'{{"daily_usd": {bad}, "monthly_usd": "5"}}', "daily_usd"),
                            (f'{{"daily_usd": "2", "monthly_usd": {bad}}}', "monthly_usd")):
            r = await http.post("/operator/api/budgets/bob", content=body, headers=headers)
            assert r.status_code == 400, (body, r.status_code, r.text)
            assert r.json()["detail"].startswith(field + ":")
        r = await http.post("/operator/api/budgets/bob", json={"daily_usd": "2"})  # a field missing
        assert r.status_code == 400 and r.json()["detail"].startswith("monthly_usd:")
        assert await budgets() == before  # nothing changed


async def test_uploads_are_refused_before_their_body_is_read(server: Server) -> None:
    alice = Chat(server.url, "alice")
    await alice.login()
    await alice.connect()
    async with httpx.AsyncClient(base_url=server.url, cookies=alice.cookies) as http:
        r = await http.post("/project/file", params={"session_id": alice.session_id},
                            files={"file": ("big.bin", b"\0" * 5_000_000, "application/octet-stream")})
    assert r.status_code == 403 and r.json()["detail"] == "file uploads are off"
    assert not any(server.data_dir.parent.rglob("big.bin"))
    await alice.close()
