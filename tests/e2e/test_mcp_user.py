"""Users' own MCP servers through chainlit's real /mcp endpoint, the operator's MCP status, and bad MCP configs
at start-up. Browserless: real `chainlit run` servers, python-socketio chats (tests/e2e/test_isolation.py), a real
probe MCP server over Streamable HTTP on loopback (tests/mcp_servers/probe.py)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, Server, serving, start_server, stop_server
from tests.e2e.test_isolation import APPROVAL_ID, Chat
from tests.mcp_servers.harness import HttpProbe, start_http_probe

CALL_LOOKUP = 'call mine__lookup with {"key": "k"}'
GHOST = "/nonexistent/tollgate-ghost-mcp"


@pytest.fixture(scope="module")
def probe() -> Iterator[HttpProbe]:
    p = start_http_probe()
    yield p
    p.stop()


USERS: dict[str, tuple[str, ...]] = {"users": ("alice", "bob"), "operators": ("olga",)}


@pytest.fixture(scope="module")
def on_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Users' servers on (loopback allowed for the probe); the operator's config names a command that does not exist."""
    root = tmp_path_factory.mktemp("e2e-user-mcp")
    config = root / "mcp.toml"
    config.write_text(f'[servers.ghost]\ncommand = ["{GHOST}"]\n\n[servers.good]\ncommand = ["{sys.executable}", '
                      f'"{Path(__file__).parents[1] / "mcp_servers" / "probe.py"}"]\n')
    with serving(root / "data", {"TOLLGATE_USER_MCP": "on", "TOLLGATE_MCP_CONFIG": str(config),
                                 "TOLLGATE_USER_MCP_ALLOW_ADDRESSES": "127.0.0.1"}, **USERS) as srv:
        yield srv


async def _connect(chat: Chat, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=chat.base, cookies=chat.cookies, timeout=60) as http:
        return await http.post("/mcp", json={"sessionId": chat.session_id, **body})


async def _chat(server: Server, user: str) -> Chat:
    chat = Chat(server.url, user)
    await chat.login()
    await chat.connect()
    return chat


async def test_alices_server_is_hers_alone_and_its_tools_ask(on_server: Server, probe: HttpProbe) -> None:
    alice, bob = await _chat(on_server, "alice"), await _chat(on_server, "bob")
    try:
        r = await _connect(alice, {"name": "mine", "clientType": "streamable-http", "url": probe.url})
        assert r.status_code == 200, r.text
        assert {"name": "lookup"} in r.json()["mcp"]["tools"]
        await alice.send(CALL_LOOKUP)
        await alice.wait_for(APPROVAL_ID)  # the model was offered mine__lookup, and calling it asks
        await alice.wait_for(re.compile(r"Approval needed: `mine__lookup`"))
        await alice.wait_for(re.compile(r"own MCP server mine"))  # the card says whose server it is
        await bob.send(CALL_LOOKUP)  # bob's model is not offered alice's tools
        await bob.wait_for(re.compile(r"the mine__lookup tool is not available"))
        assert not any(APPROVAL_ID.search(str(data)) for _, data in bob.events)
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"name": "x", "clientType": "stdio", "fullCommand": "touch /tmp/pwned-by-user-mcp"}, 400, "operator-only"),
    ({"name": "x", "clientType": "sse", "url": "http://127.0.0.1:9/sse"}, 400, "SSE MCP servers are not accepted"),
    ({"name": "x", "clientType": "streamable-http", "url": "http://169.254.169.254/mcp"}, 400, "non-public"),
    ({"name": "x", "clientType": "streamable-http", "url": "http://10.0.0.1/mcp"}, 400, "non-public"),
    ({"name": "x", "clientType": "streamable-http", "url": "file:///etc/passwd"}, 400, "only http and https"),
    ({"name": "x"}, 400, "Streamable HTTP"),  # a name alone: a chainlit-named server; there are none
])
async def test_stdio_sse_and_private_addresses_are_refused_before_any_connection(
        on_server: Server, body: dict[str, Any], status: int, says: str) -> None:
    alice = await _chat(on_server, "alice")
    try:
        r = await _connect(alice, body)
    finally:
        await alice.close()
    assert r.status_code == status and says in r.json()["detail"], r.text
    assert not Path("/tmp/pwned-by-user-mcp").exists()


async def test_off_by_default_refuses_a_logged_in_user(server: Server, probe: HttpProbe) -> None:
    alice = await _chat(server, "alice")
    try:
        r = await _connect(alice, {"name": "mine", "clientType": "streamable-http", "url": probe.url})
    finally:
        await alice.close()
    assert r.status_code == 403 and "turned off" in r.json()["detail"]


def _status(server: Server, user: str) -> httpx.Response:
    token = httpx.post(server.url + "/login", data={"username": user, "password": PASSWORD}).cookies["access_token"]
    return httpx.get(server.url + "/operator/api/mcp", cookies={"access_token": token})


def test_operators_see_each_servers_state_and_others_get_403(on_server: Server) -> None:
    assert _status(on_server, "alice").status_code == 403
    r = _status(on_server, "olga")
    assert r.status_code == 200
    found = r.json()
    servers = {s["name"]: s for s in found["servers"]}
    assert servers["good"]["state"] == "connected" and servers["good"]["tools"] > 0
    ghost = servers["ghost"]
    assert ghost["state"] == "reconnecting" and ghost["tools"] == 0 and ghost["next_attempt_s"] is not None
    assert "No such file" in ghost["last_error"] or "not found" in ghost["last_error"].lower(), ghost
    assert found["config_error"] is None and found["user_servers"]["enabled"] is True
    log = on_server.log.read_text()
    assert "MCP server ghost is unavailable" in log


@pytest.fixture(scope="module")
def bad_config_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("e2e-bad-mcp")
    config = root / "broken-mcp.toml"
    config.write_text("[servers.t]\ncommand = ['x']\nreadonly = ['a']\n")  # an unknown key
    with serving(root / "data", {"TOLLGATE_MCP_CONFIG": str(config)}, **USERS) as srv:
        yield srv, config


async def test_a_bad_mcp_config_does_not_stop_the_chat(bad_config_server: tuple[Server, Path]) -> None:
    server, config = bad_config_server
    alice = await _chat(server, "alice")
    try:
        await alice.send("save a note called kept: the chat works")
        await alice.wait_for(APPROVAL_ID)  # a built-in tool, through the model: the app runs without MCP
    finally:
        await alice.close()
    found = _status(server, "olga").json()
    assert found["servers"] == [] and f"{config}: servers.t.readonly: unknown key" in found["config_error"]
    assert f"MCP servers NOT started: {config}: servers.t.readonly" in server.log.read_text()


def test_an_unreadable_mcp_config_is_named_in_the_status(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-mcp.toml"
    srv = start_server(tmp_path / "data", extra_env={"TOLLGATE_MCP_CONFIG": str(missing)})
    try:
        srv.cli("users", "add", "olga", "--password-stdin", "--role", "operator", stdin=PASSWORD + "\n")
        found = _status(srv, "olga").json()
    finally:
        stop_server(srv)
    assert f"cannot read {missing}" in found["config_error"]
