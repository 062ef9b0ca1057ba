"""In the browser: an answer cut at max_tokens is marked cut, and clicking "Continue" shows the rest.

The model is a scripted model server in this process, reached through ANTHROPIC_BASE_URL (as in
test_external_model.py); it cuts the first answer at the app's max_tokens on its own, as the API does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from agent.turn import CONTINUE_PROMPT
from fakeclaude import DemoModelServer, Reply, ScriptedBrain, TextBlock
from tests.conftest import FAST
from tests.e2e.conftest import Server, login, send, serving

pytestmark = pytest.mark.browser

LONG = "Step one of the launch checklist is to confirm the date with Ana. " * 40  # far past 300 tokens
REST = "Finally, send the checklist to the team: that is the rest of the answer."


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, DemoModelServer]]:
    model = DemoModelServer(brain=ScriptedBrain([Reply((TextBlock(LONG),)), Reply((TextBlock(REST),))]),
                            settings=FAST)
    url = model.start()
    data: Path = tmp_path_factory.mktemp("continue") / "data"
    try:
        with serving(data, {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": url,
                            "TOLLGATE_MAX_TOKENS": "300"}) as srv:
            yield srv, model
    finally:
        model.stop()


def test_clicking_continue_shows_the_rest_of_a_cut_answer(scripted: tuple[Server, DemoModelServer],
                                                          browser: Browser) -> None:
    server, model = scripted
    page = login(browser, server.url, "alice")
    send(page, "explain the launch checklist")
    expect(page.get_by_text("incomplete: the answer was cut off here")).to_be_visible()
    expect(page.get_by_text("The answer was cut at the 300-token limit")).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text(REST)).to_be_visible()
    _first, second = model.requests
    assert second["messages"][-1]["content"][-1]["text"] == CONTINUE_PROMPT
    expect(page.get_by_role("button", name="Continue")).to_have_count(0)  # used once, then gone
    page.context.close()
