"""Isolation through every door, with bob's real cookie: REST, socket.io threadId, replayed action ids.

Browserless (python-socketio and httpx against the real chainlit server); counts attempts refused."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import socketio

from store import approvals as approval_store
from store import threads as thread_store
from store.db import Database
from tests.e2e.conftest import PASSWORD, Server

APPROVAL_ID = re.compile(r'"approval_id": ?"([0-9a-f]{32})"')


@dataclass
class Chat:
    """One logged-in socket.io chat session, recording every event the server sends."""

    base: str
    user: str
    thread_id: str = ""
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    events: list[tuple[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    token: str = ""
    sio: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient(reconnection=False))

    async def login(self) -> None:
        async with httpx.AsyncClient(base_url=self.base) as http:
            r = await http.post("/login", data={"username": self.user, "password": PASSWORD})
            r.raise_for_status()
            self.token = r.cookies["access_token"]

    @property
    def cookies(self) -> dict[str, str]:
        return {"access_token": self.token}

    async def connect(self, thread_id: str = "") -> None:
        @self.sio.on("*")
        async def record(event: str, data: Any = None) -> None:
            self.events.append((event, data))
            self.changed.set()

        await self.sio.connect(self.base, socketio_path="/ws/socket.io", transports=["websocket"],
                               headers={"Cookie": f"access_token={self.token}"},
                               auth={"sessionId": self.session_id, "clientType": "webapp", "threadId": thread_id})
        await self.sio.emit("connection_successful")

    async def send(self, text: str) -> None:
        self.thread_id = self.thread_id or str(uuid.uuid4())
        await self.sio.emit("client_message", {"message": {
            "id": str(uuid.uuid4()), "threadId": self.thread_id, "name": self.user, "type": "user_message",
            "output": text, "createdAt": datetime.now(UTC).isoformat()}, "fileReferences": None})

    async def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        async with asyncio.timeout(timeout):
            while True:
                for _, data in self.events:
                    if m := pattern.search(json.dumps(data)):
                        return m
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        await self.sio.disconnect()


@pytest.fixture
async def db(server: Server) -> AsyncIterator[Database]:
    database = Database.for_data_dir(server.data_dir)
    yield database
    await database.close()


async def test_bob_cannot_reach_alices_thread_or_approval(server: Server, db: Database) -> None:
    alice, bob = Chat(server.url, "alice"), Chat(server.url, "bob")
    for chat in (alice, bob):
        await chat.login()
        await chat.connect()
    await alice.send("save a note called secret: alice-data")
    approval_id = (await alice.wait_for(APPROVAL_ID)).group(1)
    thread = (await approval_store.get_approval(db, approval_id=approval_id, viewer="alice")).thread_id
    assert (await thread_store.get_thread(db, owner="alice", thread_id=thread)).title.startswith("save a note")
    attempts, refused = 0, 0

    async with httpx.AsyncClient(base_url=server.url, cookies=bob.cookies) as http:
        # REST: open, list, rename, delete
        for method, url, body in [
            ("GET", f"/project/thread/{thread}", None),
            ("PUT", "/project/thread", {"threadId": thread, "name": "pwned"}),
            ("DELETE", "/project/thread", {"threadId": thread}),
        ]:
            attempts += 1
            r = await http.request(method, url, json=body)
            refused += r.status_code in (401, 403, 404)
        attempts += 1
        r = await http.post("/project/threads", json={"pagination": {"first": 50}, "filter": {}})
        listed = {t["id"] for t in r.json()["data"]}
        refused += thread not in listed
        attempts += 1  # searching for words of alice's message
        r = await http.post("/project/threads", json={"pagination": {"first": 50}, "filter": {"search": "alice-data"}})
        refused += r.status_code == 200 and thread not in {t["id"] for t in r.json()["data"]}
        # Approving alice's card with its real action id, from bob's own session
        for name in ("tollgate_approve", "tollgate_reject"):
            attempts += 1
            action = {"name": name, "payload": {"approval_id": approval_id}, "label": "x", "id": str(uuid.uuid4()),
                      "forId": str(uuid.uuid4())}
            r = await http.post("/project/action", json={"sessionId": bob.session_id, "action": action})
            a = await approval_store.get_approval(db, approval_id=approval_id, viewer="alice")
            refused += a.status == "pending"
        # bob's cookie on alice's session id
        attempts += 1
        r = await http.post("/project/action", json={"sessionId": alice.session_id, "action": action})
        refused += r.status_code in (401, 403, 404)

    # socket.io: bob connects asking to resume alice's thread id
    intruder = Chat(server.url, "bob", token=bob.token)
    attempts += 1
    try:
        await intruder.connect(thread_id=thread)
        await intruder.sio.emit("client_message", {"message": {
            "id": str(uuid.uuid4()), "threadId": thread, "name": "bob", "type": "user_message",
            "output": "list my files", "createdAt": datetime.now(UTC).isoformat()}, "fileReferences": None})
        await intruder.wait_for(re.compile("."), timeout=10)  # the server has answered something
        async with asyncio.timeout(20):  # chainlit reports the end of the message's task
            while not any(e == "task_end" for e, _ in intruder.events):
                intruder.changed.clear()
                await intruder.changed.wait()
        print("intruder saw:", sorted({e for e, _ in intruder.events}))
        leaked = "alice-data" in json.dumps(intruder.events)
        stored = await thread_store.load_messages(db, owner="alice", thread_id=thread)
        refused += not leaked and all("list my files" not in json.dumps(m.content) for m in stored)
        await intruder.close()
    except socketio.exceptions.ConnectionError:
        refused += 1

    a = await approval_store.get_approval(db, approval_id=approval_id, viewer="alice")
    assert a.status == "pending" and not a.executed
    assert not (server.workspace("alice") / "notes" / "secret.txt").exists()
    assert not (server.workspace("bob") / "notes" / "secret.txt").exists()
    print(f"isolation: {refused} of {attempts} attempts refused")
    assert refused == attempts
    for chat in (alice, bob):
        await chat.close()


async def test_owner_renames_searches_and_deletes_through_the_sidebar_api(server: Server, db: Database) -> None:
    alice = Chat(server.url, "alice")
    await alice.login()
    await alice.connect()
    await alice.send("save a note called renameme: x")
    approval_id = (await alice.wait_for(APPROVAL_ID)).group(1)
    thread = (await approval_store.get_approval(db, approval_id=approval_id, viewer="alice")).thread_id
    async with httpx.AsyncClient(base_url=server.url, cookies=alice.cookies) as http:
        r = await http.put("/project/thread", json={"threadId": thread, "name": "Renamed by alice"})
        assert r.status_code == 200
        assert (await thread_store.get_thread(db, owner="alice", thread_id=thread)).title == "Renamed by alice"
        for words in ("renameme", "RENAMED by", "called renamem"):  # a message's words (FTS5) and the title
            found = await http.post("/project/threads", json={"pagination": {"first": 20}, "filter": {"search": words}})
            assert [t["id"] for t in found.json()["data"]] == [thread], words
        r = await http.request("DELETE", "/project/thread", json={"threadId": thread})
        assert r.status_code == 200
    assert await thread_store.owner_of(db, thread_id=thread) is None
    await alice.close()
