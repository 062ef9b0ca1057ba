"""The console's MCP block in Chromium (a module of its own: sync Playwright and asyncio tests do not share a
module's event loop)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import Server, login
from tests.e2e.test_mcp_user import on_server  # noqa: F401 - the fixture (ghost and good servers)


@pytest.mark.browser
def test_the_console_shows_each_servers_state(on_server: Server, browser: Browser) -> None:  # noqa: F811
    page = login(browser, on_server.url, "olga")
    page.goto(on_server.url + "/operator#mcp")
    rows = page.locator("#mcp-rows tr")
    expect(rows.filter(has_text="ghost")).to_contain_text("reconnecting")
    expect(rows.filter(has_text="ghost")).to_contain_text("No such file or directory")
    expect(rows.filter(has_text="good")).to_contain_text("connected")
    expect(page.locator("#mcp-summary")).to_contain_text("users' own servers on")
    expect(page.locator("#mcp-error")).to_be_hidden()
    page.context.close()
