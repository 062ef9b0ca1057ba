"""Sessions and logins against the real chainlit server: a copied cookie dies with logout, user removal and a
new password (HTTP 401 and a refused socket); login failures are limited per account and per address (the
address is the TCP peer: X-Forwarded-For counts only from TOLLGATE_TRUSTED_PROXY)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, Server, serving
from tests.e2e.test_isolation import Chat
from tests.e2e.test_socket_origin import try_chat


def _user(server: Server) -> str:
    name = f"sam-{uuid.uuid4().hex[:8]}"
    server.cli("users", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    return name


async def _logged_in(server: Server, name: str) -> Chat:
    chat = Chat(server.url, name)
    await chat.login()
    return chat


async def _cookie_works(server: Server, token: str) -> bool:
    async with httpx.AsyncClient(base_url=server.url, cookies={"access_token": token}) as http:
        r = await http.get("/user")
        assert r.status_code in (200, 401), r.text
        return r.status_code == 200


async def _socket_works(server: Server, name: str, token: str) -> bool:
    chat = Chat(server.url, name)
    chat.token = token
    try:
        return await try_chat(chat, server.url, "websocket")
    finally:
        if chat.sio.connected:
            await chat.sio.disconnect()


async def test_logout_revokes_a_copied_cookie(server: Server) -> None:
    name = _user(server)
    chat = await _logged_in(server, name)
    copied = chat.token
    assert await _cookie_works(server, copied)
    async with httpx.AsyncClient(base_url=server.url, cookies={"access_token": copied}) as http:
        assert (await http.post("/logout", headers={"Origin": server.url})).status_code == 200
    assert not await _cookie_works(server, copied)
    assert not await _socket_works(server, name, copied)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {copied}"}) as http:
        assert (await http.post("/auth/jwt")).status_code == 401  # no trading it for a fresh token either
    fresh = await _logged_in(server, name)  # logging in again works at once
    assert await _cookie_works(server, fresh.token)
    assert await _socket_works(server, name, fresh.token)


async def test_logout_closes_a_socket_opened_before_it(server: Server) -> None:
    name = _user(server)
    copied = (await _logged_in(server, name)).token
    thief = Chat(server.url, name)
    thief.token = copied
    gone = asyncio.Event()
    thief.sio.on("disconnect", lambda *_reason: gone.set())
    assert await try_chat(thief, server.url, "websocket")
    async with httpx.AsyncClient(base_url=server.url, cookies={"access_token": copied}) as http:
        assert (await http.post("/logout")).status_code == 200
    async with asyncio.timeout(20):
        await gone.wait()
    assert not thief.sio.connected


async def test_page_load_with_a_revoked_cookie_drops_it(server: Server) -> None:
    name = _user(server)
    chat = await _logged_in(server, name)
    async with httpx.AsyncClient(base_url=server.url, cookies=chat.cookies) as http:
        await http.post("/logout")
        r = await http.get("/login")  # the login page still loads, and the browser is told to drop the cookie
        assert r.status_code == 200
        assert "access_token=;" in r.headers.get("set-cookie", "")


@pytest.mark.parametrize("how", ["remove", "set-password"])
async def test_removal_and_new_password_revoke(server: Server, how: str) -> None:
    name = _user(server)
    copied = (await _logged_in(server, name)).token
    assert await _socket_works(server, name, copied)
    if how == "remove":
        server.cli("users", "remove", name)
    else:
        server.cli("users", "set-password", name, "--password-stdin", stdin="a different passphrase\n")
    assert not await _cookie_works(server, copied)
    assert not await _socket_works(server, name, copied)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Its own server: these tests lock out 127.0.0.1, which would stop every other test's login."""
    with serving(tmp_path_factory.mktemp("limits") / "data", users=("rita", "sam")) as srv:
        yield srv


async def _login(server: Server, name: str, password: str, source: str = "127.0.0.1",
                 headers: dict[str, str] | None = None) -> int:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=server.url, transport=transport) as http:
        r = await http.post("/login", data={"username": name, "password": password}, headers=headers or {})
        return r.status_code


async def test_thirty_wrong_passwords_then_the_right_one_refused(limited: Server) -> None:
    codes = [await _login(limited, "rita", f"wrong-{i}") for i in range(30)]
    assert set(codes) == {401}
    assert await _login(limited, "rita", PASSWORD) == 401  # the right password, held by the limits
    # another account from another address is unaffected
    assert await _login(limited, "sam", PASSWORD, source="127.0.0.2") == 200
    # rita from another address: still held by her account's failures
    assert await _login(limited, "rita", PASSWORD, source="127.0.0.3") == 401
    assert "login refused by the failure limits" in limited.log.read_text()


async def test_an_address_with_twenty_failures_is_held_and_cannot_forge_another(limited: Server) -> None:
    for i in range(20):  # one failure for each of 20 names: no account limit, the address's limit
        assert await _login(limited, f"guess-{i}", "wrong", source="127.0.0.4") == 401
    assert await _login(limited, "sam", PASSWORD, source="127.0.0.4") == 401
    # a forged X-Forwarded-For does not make it another address (uvicorn no longer trusts it from loopback)
    assert await _login(limited, "sam", PASSWORD, source="127.0.0.4", headers={"X-Forwarded-For": "10.9.9.9"}) == 401
    assert await _login(limited, "sam", PASSWORD, source="127.0.0.5") == 200


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("proxy") / "data", {"TOLLGATE_TRUSTED_PROXY": "127.0.0.1"},
                 users=("rita",)) as srv:
        yield srv


async def test_forwarded_for_counts_only_from_the_trusted_proxy(behind_proxy: Server) -> None:
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    for i in range(20):
        assert await _login(behind_proxy, f"guess-{i}", "wrong", headers=attacker) == 401
    assert await _login(behind_proxy, "rita", PASSWORD, headers=attacker) == 401  # that address is held
    assert await _login(behind_proxy, "rita", PASSWORD, headers={"X-Forwarded-For": "203.0.113.8"}) == 200


@pytest.mark.parametrize("how", ["remove", "set-password"])
async def test_a_socket_open_before_removal_or_a_new_password_is_closed(server: Server, how: str) -> None:
    """The handshake is the only check a socket gets; a user removed (or whose password changed) by the CLI,
    another process, must not keep chatting on a socket opened before. A socket logged in after stays."""
    name = _user(server)
    thief = Chat(server.url, name)
    thief.token = (await _logged_in(server, name)).token
    gone = asyncio.Event()
    thief.sio.on("disconnect", lambda *_reason: gone.set())
    assert await try_chat(thief, server.url, "websocket")
    if how == "remove":
        server.cli("users", "remove", name)
    else:
        server.cli("users", "set-password", name, "--password-stdin", stdin="a different passphrase\n")
        owner = Chat(server.url, name)
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.post("/login", data={"username": name, "password": "a different passphrase"})
            owner.token = r.cookies["access_token"]
        assert await try_chat(owner, server.url, "websocket")
    async with asyncio.timeout(30):
        await gone.wait()
    assert not thief.sio.connected
    if how == "set-password":
        assert owner.sio.connected  # the new login's socket is not the revoked one
        await owner.sio.disconnect()
