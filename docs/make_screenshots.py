"""Regenerates the README's screenshots: `.venv/bin/python docs/make_screenshots.py`.

Starts a throwaway server on a free port with the demo model, drives Debian's Chromium through a
short session, and writes PNGs next to this file.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, send, start_server, stop_server  # noqa: E402

OUT = Path(__file__).parent


def signed_in(browser: Browser, url: str, user: str, *, height: int) -> Page:
    page = browser.new_page(base_url=url, viewport={"width": 1100, "height": height})
    page.goto("/login")
    page.locator("#email").fill(user)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.locator("#chat-input")).to_be_visible(timeout=20_000)
    return page


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            server.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
            server.cli("users", "add", "olga", "--password-stdin", "--role", "operator", stdin=PASSWORD + "\n")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                notes = server.workspace("alice") / "notes"
                notes.mkdir(parents=True, exist_ok=True)
                (notes / "groceries.txt").write_text("milk, eggs, bread\n")
                # Tall enough that the whole session shows: steps in place, the usage footer, a styled card.
                page = signed_in(browser, server.url, "alice", height=1500)
                send(page, "list my files and search for milk")
                expect(page.get_by_text("this answer $").first).to_be_visible(timeout=20_000)
                send(page, "save a note called todo: call the bank")
                expect(page.get_by_role("button", name="Approve", exact=True)).to_be_visible(timeout=20_000)
                page.mouse.move(550, 600)  # chainlit scrolls the newest question to the top: show the first turn too
                page.mouse.wheel(0, -5000)
                expect(page.locator("[data-step-type='user_message']").first).to_be_in_viewport()
                page.screenshot(path=str(OUT / "screenshot-chat.png"), full_page=True)
                page.get_by_role("button", name="Approve", exact=True).click()
                expect(page.get_by_text("this answer $").nth(1)).to_be_visible(timeout=20_000)
                send(page, "delete groceries")
                expect(page.get_by_text("Waiting for an operator to decide.")).to_be_visible(timeout=20_000)
                console = signed_in(browser, server.url, "olga", height=1000)
                console.goto("/operator")
                expect(console.locator("[data-approval]")).to_be_visible(timeout=20_000)
                expect(console.locator("body[data-charts]")).to_have_count(1, timeout=20_000)  # charts drawn
                console.screenshot(path=str(OUT / "screenshot-console.png"), full_page=True)
                browser.close()
        finally:
            stop_server(server)
    print(f"wrote {OUT / 'screenshot-chat.png'} and {OUT / 'screenshot-console.png'}")


if __name__ == "__main__":
    main()
