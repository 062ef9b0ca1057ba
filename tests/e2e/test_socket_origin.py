"""The chat socket checks who is calling: python-socketio clients with a foreign Origin, over websocket and
over polling, with the victim's real cookie, get no session; the app's own origin (and no Origin, a
non-browser client) still works. Browserless, against the real chainlit server."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import socketio

from store import threads as thread_store
from store.db import Database
from tests.e2e.conftest import PASSWORD, Server, free_port
from tests.e2e.test_isolation import Chat

ANSWER = re.compile(r'"output": ?"[^"]*milk')


@pytest.fixture
async def db(server: Server) -> AsyncIterator[Database]:
    database = Database.for_data_dir(server.data_dir)
    yield database
    await database.close()


@pytest.fixture
def victim(server: Server) -> str:
    """A fresh user per test, so "nothing stored for her" holds whatever ran before."""
    name = f"vera-{uuid.uuid4().hex[:8]}"
    server.cli("users", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    return name


async def try_chat(chat: Chat, origin: str | None, transport: str) -> bool:
    """Connect and send one message; True when the server accepted the connection."""
    @chat.sio.on("*")
    async def record(event: str, data: Any = None) -> None:
        chat.events.append((event, data))
        chat.changed.set()

    headers = {"Cookie": f"access_token={chat.token}"} | ({"Origin": origin} if origin else {})
    try:
        await chat.sio.connect(chat.base, socketio_path="/ws/socket.io", transports=[transport], headers=headers,
                               auth={"sessionId": chat.session_id, "clientType": "webapp", "threadId": ""},
                               wait_timeout=10)
    except (socketio.exceptions.ConnectionError, RuntimeError) as e:
        # python-engineio's polling client closes its session before reading an error answer's body
        assert isinstance(e, socketio.exceptions.ConnectionError) or str(e) == "Connection closed."
        if chat.sio.eio.http is not None:  # a refused client keeps its aiohttp session open
            await chat.sio.eio.http.close()
        return False
    await chat.sio.emit("connection_successful")
    await chat.send("Save a note called groceries: milk")
    return True


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_foreign_origin_gets_no_socket(server: Server, db: Database, victim: str, transport: str) -> None:
    foreign = f"http://127.0.0.1:{free_port()}"
    for origin in (foreign, "http://localhost:1", "null", server.url + ".evil.example"):
        chat = Chat(server.url, victim)
        await chat.login()
        assert not await try_chat(chat, origin, transport), origin
        assert chat.events == []
    assert await thread_store.list_threads(db, owner=victim) == []


@pytest.mark.parametrize("origin", ["own", "none"])
async def test_own_origin_and_no_origin_still_chat(server: Server, db: Database, victim: str, origin: str) -> None:
    chat = Chat(server.url, victim)
    await chat.login()
    try:
        assert await try_chat(chat, server.url if origin == "own" else None, "websocket")
        await chat.wait_for(re.compile("tollgate_approve"))
    finally:
        await chat.close()


async def test_foreign_origin_http_post_refused(server: Server, victim: str) -> None:
    """A cross-origin form POST (no preflight) is refused before chainlit: here, a login attempt."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/login", data={"username": victim, "password": PASSWORD},
                            headers={"Origin": f"http://127.0.0.1:{free_port()}"})
        assert r.status_code == 403
        assert "access_token" not in r.cookies
        r = await http.post("/login", data={"username": victim, "password": PASSWORD}, headers={"Origin": server.url})
        assert r.status_code == 200


async def test_polling_by_hand_foreign_origin_gets_no_sid(server: Server, victim: str) -> None:
    """The raw engine.io polling handshake and a CONNECT packet posted to a live session id: both refused."""
    foreign = {"Origin": f"http://127.0.0.1:{free_port()}"}
    chat = Chat(server.url, victim)
    await chat.login()
    async with httpx.AsyncClient(base_url=server.url, cookies=chat.cookies) as http:
        r = await http.get("/ws/socket.io/", params={"EIO": "4", "transport": "polling"}, headers=foreign)
        assert r.status_code == 403
        assert '"sid"' not in r.text
        r = await http.get("/ws/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert r.status_code == 200
        sid = re.search(r'"sid":"([^"]+)"', r.text)
        assert sid is not None
        connect = "40" + json.dumps({"sessionId": str(uuid.uuid4()), "clientType": "webapp"})
        r = await http.post("/ws/socket.io/", params={"EIO": "4", "transport": "polling", "sid": sid.group(1)},
                            content=connect, headers=foreign | {"Content-Type": "text/plain;charset=UTF-8"})
        assert r.status_code == 403
