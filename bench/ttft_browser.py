"""Time from clicking send to the first sign of the answer in the browser, demo model, median of 5.

`.venv/bin/python bench/ttft_browser.py` — the demo model waits TOLLGATE_DEMO_FIRST_TOKEN_MS (default
300 ms here, like a real model's time to first token) before its first delta. Like Claude 5.x it thinks first:
its thinking block starts at once (the delay applies to the block's first delta, not its start) and the chat
shows the "Thinking…" step as soon as the block starts, so send → thinking step is what Tollgate (including the
turn's count_tokens request), chainlit and the browser add, with no model time in it. Send → first answer text
is printed too; it includes the first-token delay and the whole thinking block.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, start_server, stop_server

FIRST_TOKEN_MS = 300
RUNS = 5

JS_THINKING = """(n) => document.querySelectorAll("[id^='step-Th']").length > n"""
JS_WAIT = """(n) => [...document.querySelectorAll("[data-step-type='assistant_message']")]
                   .filter(m => m.innerText.trim().length > 0).length > n"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", {"TOLLGATE_DEMO_FIRST_TOKEN_MS": str(FIRST_TOKEN_MS),
                                                   "TOLLGATE_DEMO_TOKENS_PER_SEC": "80"})
        try:
            server.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(base_url=server.url)
                page.goto("/login")
                page.locator("#email").fill("alice")
                page.locator("#password").fill(PASSWORD)
                page.get_by_role("button", name="Sign In").click()
                expect(page.locator("#chat-input")).to_be_visible(timeout=30_000)
                times, thinking = [], []
                for i in range(RUNS):
                    before = page.locator("[data-step-type='assistant_message']").count()
                    thoughts = page.locator("[id^='step-Th']").count()
                    page.locator("#chat-input").fill(f"hello number {i}")
                    start = page.evaluate("performance.now()")
                    page.locator("#chat-submit").click()
                    page.wait_for_function(JS_THINKING, arg=thoughts, polling="raf", timeout=30_000)
                    thinking.append(page.evaluate("performance.now()") - start)
                    page.wait_for_function(JS_WAIT, arg=before, polling="raf", timeout=30_000)
                    times.append(page.evaluate("performance.now()") - start)
                    expect(page.get_by_text("this answer $").nth(i)).to_be_visible(timeout=30_000)
                browser.close()
        finally:
            stop_server(server)
    med, think = statistics.median(times), statistics.median(thinking)
    print("| runs | median send→thinking step = added (ms) | median send→first answer text (ms, incl. the "
          f"model's {FIRST_TOKEN_MS} ms first-token delay and its thinking) |")
    print("|---|---|---|")
    print(f"| {RUNS} | {think:.0f} | {med:.0f} |")
    print("all runs, thinking step (ms):", ", ".join(f"{t:.0f}" for t in thinking))
    print("all runs, answer text (ms):", ", ".join(f"{t:.0f}" for t in times))


if __name__ == "__main__":
    main()
