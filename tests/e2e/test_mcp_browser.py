"""End to end: a real chainlit server with the bundled MCP task-list server (stdio), approved in Chromium."""

from __future__ import annotations

import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import ROOT, Server, login, send, serving

pytestmark = pytest.mark.browser
STARTER = "Add a task: water the plants"


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("e2e-mcp")
    tasks_db = root / "tasks.sqlite"
    config = root / "mcp.toml"
    command = [sys.executable, str(ROOT / "examples" / "mcp_tasks" / "server.py")]
    config.write_text(f'[servers.tasks]\ncommand = {command!r}\nenv = {{ TASKS_DB = "{tasks_db}" }}\n'
                      'read_only = ["list_tasks"]\n'.replace("'", '"'))
    with serving(root / "data", {"TOLLGATE_MCP_CONFIG": str(config)}) as srv:
        yield srv, tasks_db


def test_an_mcp_tool_call_is_approved_in_the_browser_and_runs(mcp_server, browser: Browser) -> None:
    server, tasks_db = mcp_server
    page = login(browser, server.url, "alice")
    send(page, STARTER)
    expect(page.get_by_text("Approval needed")).to_be_visible()
    expect(page.get_by_text("tasks__add_task").first).to_be_visible()
    expect(page.get_by_text("MCP server tasks, tool add_task").first).to_be_visible()
    expect(page.get_by_text('"title": "water the plants"').first).to_be_visible()
    assert not tasks_db.exists() or not sqlite3.connect(tasks_db).execute("SELECT * FROM task").fetchall()
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator("#step-tasks__add_task").last).to_be_visible()
    expect(page.get_by_text("Approved by alice")).to_be_visible()
    expect(page.get_by_text("Added task #1: water the plants").first).to_be_visible()
    with sqlite3.connect(tasks_db) as conn:
        assert conn.execute("SELECT title, done FROM task").fetchall() == [("water the plants", 0)]
    page.context.close()


def test_users_cannot_connect_their_own_mcp_servers(mcp_server) -> None:
    """Chainlit's MCP button is off: its connect endpoint refuses, so no user can make the server spawn or call."""
    server, _ = mcp_server
    body = b'{"name":"x","clientType":"stdio","fullCommand":"touch /tmp/pwned-by-mcp"}'
    req = urllib.request.Request(server.url + "/mcp", method="POST", data=body,
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=30)
    refused.value.close()
    assert refused.value.code in (400, 401, 403, 404)
    assert not Path("/tmp/pwned-by-mcp").exists()
