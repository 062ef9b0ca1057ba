"""Streaming overhead in a real browser: Tollgate's batching (≤ 1 update / 50 ms) vs one socket event per
delta, same run. `.venv/bin/python bench/streaming.py [--sessions 1,10]`

The demo model streams a ~2,000-token answer at a fixed rate after a fixed first-token delay. In the
page we time (performance.now) the send click, the first visible text and the moment the full answer is
rendered. Reported per variant and concurrency:
- first visible − send − the model's first-token delay: what the app + browser add before text shows;
- (full text rendered − first visible) ÷ the model's own stream duration: ≤ 1.1 means the browser
  keeps up with the model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, start_server, stop_server

FIRST_TOKEN_MS = 300
TOKENS_PER_SEC = 400.0
ANSWER_TOKENS = 2000

JS_TIMES = """async () => {
  const before = document.querySelectorAll("[data-step-type='assistant_message']").length;
  const t0 = performance.now();
  document.querySelector('#chat-submit').click();
  const answer = () => [...document.querySelectorAll("[data-step-type='assistant_message']")].slice(before);
  let first = null, last = null, length = 0;
  while (true) {  // sample every frame until the usage line (sent after the answer) shows up
    await new Promise(r => setTimeout(r, 5));
    const msgs = answer();
    const text = msgs.length ? msgs[0].innerText : '';
    if (text.length !== length) { length = text.length; last = performance.now(); if (first === null) first = last; }
    if (msgs.some(m => m.innerText.includes('this answer $'))) return [first - t0, last - t0, length];
  }
}"""


def open_chat(browser: Browser, url: str, user: str) -> Page:
    page = browser.new_page(base_url=url)
    page.set_default_timeout(180_000)
    page.goto("/login")
    page.locator("#email").fill(user)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.locator("#chat-input").wait_for()
    page.locator("#chat-input").fill(f"[long:{ANSWER_TOKENS}]")
    return page


def measure(browser: Browser, url: str, users: list[str]) -> list[tuple[float, float]]:
    """Every page sends at once; each page times itself (the JS runs in the page, not in this thread)."""
    pages = [open_chat(browser, url, u) for u in users]
    for page in pages:  # start all measurements, await none yet
        page.evaluate(f"() => {{ window.__t = null; ({JS_TIMES})().then(r => window.__t = r); }}")
    out = []
    for page in pages:
        page.wait_for_function("window.__t !== null", polling=200)
        first, full, length = page.evaluate("window.__t")
        assert length > 1000, f"the answer did not stream in full ({length} characters)"
        out.append((first, full))
        page.close()
    return out


def run_variant(interval_ms: int, sessions: list[int]) -> list[dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", {"TOLLGATE_STREAM_INTERVAL_MS": str(interval_ms),
                                                   "TOLLGATE_DEMO_FIRST_TOKEN_MS": str(FIRST_TOKEN_MS),
                                                   "TOLLGATE_DEMO_TOKENS_PER_SEC": str(TOKENS_PER_SEC),
                                                   "TOLLGATE_MAX_TOKENS": "4096"})
        try:
            users = [f"u{i}" for i in range(max(sessions))]
            for u in users:
                server.cli("users", "add", u, "--password-stdin", stdin=PASSWORD + "\n")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for n in sessions:
                    out = measure(browser, server.url, users[:n])
                    model_stream_ms = ANSWER_TOKENS / TOKENS_PER_SEC * 1000
                    firsts = [f - FIRST_TOKEN_MS for f, _ in out]
                    ratios = [(full - first) / model_stream_ms for first, full in out]
                    rows.append({"interval": interval_ms, "sessions": n,
                                 "added_first_p50": statistics.median(firsts), "added_first_max": max(firsts),
                                 "ratio_p50": statistics.median(ratios), "ratio_max": max(ratios)})
                browser.close()
        finally:
            stop_server(server)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", default="1,10")
    args = parser.parse_args()
    sessions = [int(s) for s in args.sessions.split(",")]
    rows = run_variant(50, sessions) + run_variant(0, sessions)
    print(f"answer ≈ {ANSWER_TOKENS} tokens at {TOKENS_PER_SEC:g} tokens/s "
          f"= {ANSWER_TOKENS / TOKENS_PER_SEC:.1f} s of model streaming; first-token delay {FIRST_TOKEN_MS} ms\n")
    print("| sending | sessions | added before first text p50 / max (ms) | render ÷ model stream p50 / max |")
    print("|---|---|---|---|")
    for r in rows:
        name = "batched (50 ms)" if r["interval"] else "every delta"
        print(f"| {name} | {r['sessions']} | {r['added_first_p50']:.0f} / {r['added_first_max']:.0f} | "
              f"{r['ratio_p50']:.2f} / {r['ratio_max']:.2f} |")


if __name__ == "__main__":
    main()
