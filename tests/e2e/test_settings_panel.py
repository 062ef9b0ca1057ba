"""The chat settings panel in the browser: it opens from the chat, shows the model and effort for new threads
and the user's budget left, and opening the chat (which sends the panel) creates no thread."""

from __future__ import annotations

import sqlite3

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import PASSWORD, Server, login

pytestmark = pytest.mark.browser


def threads_of(server: Server, user: str) -> int:
    with sqlite3.connect(server.data_dir / "tollgate.db") as conn:
        return int(conn.execute("SELECT count(*) FROM threads JOIN users ON users.id = threads.owner_id "
                                "WHERE users.name = ?", (user,)).fetchone()[0])


def test_the_panel_shows_the_choice_and_the_budget_left_and_opening_it_creates_no_thread(
        server: Server, browser: Browser) -> None:
    server.cli("users", "add", "dora", "--password-stdin", stdin=PASSWORD + "\n")
    page = login(browser, server.url, "dora")
    opener = page.locator("#chat-settings-open-modal")
    expect(opener).to_be_visible()  # sent by on_chat_start
    assert threads_of(server, "dora") == 0
    opener.click()
    expect(page.get_by_text("Model for new threads")).to_be_visible()
    expect(page.get_by_text("Effort for new threads")).to_be_visible()
    expect(page.locator("#tollgate_budget_left")).to_have_value(
        "$1.00 left today (of $1.00); $10.00 left this month (of $10.00)")
    page.context.close()
