"""Send → first visible sign of life (the "Thinking…" step) and → first answer text, in a real browser,
with the demo model paced like a real one (300 ms to the first token, 80 tokens/s, effort medium)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import Server, login, serving

pytestmark = pytest.mark.browser

# Resolves with (ms to the first thinking step, ms to the first answer text) after the click.
_WATCH = """() => new Promise(resolve => {
  const t0 = performance.now(); let thinking = null;
  const before = document.querySelectorAll("[data-step-type='assistant_message']").length;
  const check = () => {
    if (thinking === null && document.querySelector("[id^='step-Th']")) thinking = performance.now() - t0;
    const answers = document.querySelectorAll("[data-step-type='assistant_message']");
    if (answers.length > before && answers[answers.length - 1].innerText.trim().length > 0) {
      observer.disconnect(); resolve([thinking, performance.now() - t0]);
    }
  };
  const observer = new MutationObserver(check);
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
  document.querySelector("#chat-submit").click();
})"""


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("paced") / "data",
                 {"TOLLGATE_DEMO_FIRST_TOKEN_MS": "300", "TOLLGATE_DEMO_TOKENS_PER_SEC": "80"}) as srv:
        yield srv


def test_the_thinking_state_shows_before_the_first_answer_text(paced: Server, browser: Browser) -> None:
    page = login(browser, paced.url, "alice")
    thinking, answer = [], []
    for n in range(5):
        page.locator("#chat-input").fill(f"hello {n}")
        expect(page.locator("#chat-submit")).to_be_enabled(timeout=30_000)  # the previous turn is over
        t, a = page.evaluate(_WATCH)
        assert t is not None and t < a
        thinking.append(t)
        answer.append(a)
    print(f"\nsend -> thinking step p50 {statistics.median(thinking):.0f} ms, "
          f"-> first answer text p50 {statistics.median(answer):.0f} ms (n=5)")
    page.context.close()
