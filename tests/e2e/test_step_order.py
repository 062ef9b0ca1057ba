"""Steps sit where they happened, live and in history: after the text that announced them, before the text
that used their result, and above an approval card they came before. Read from the DOM of a real
Chromium on a real server: message texts, step titles and cards in document order."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import PASSWORD, Server, login, send, serving, start_server, stop_server

pytestmark = pytest.mark.browser

USAGE = re.compile(r"this answer \$")
# Every message, step and card the chat shows, in document order, as "kind:text".
DOM_ORDER = """() => [...document.querySelectorAll('[data-step-type]')].map(el => {
    const kind = el.dataset.stepType;
    if (kind === 'tool' || kind === 'llm') {
        const head = el.querySelector("button[id^='step-']");
        return 'step:' + (head ? head.id.slice(5) : '?');
    }
    const text = el.innerText.replace(/\\s+/g, ' ').trim();
    if (kind === 'user_message') return 'user:' + text;
    if (/Approval needed|✅ Approved|❌ Rejected/.test(text)) return 'card:' + text;
    return 'text:' + text;
})"""


@pytest.fixture(scope="module")
def ordered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("order") / "data", operators=("olga",)) as srv:
        yield srv


def dom_order(page: Page) -> list[str]:
    return list(page.evaluate(DOM_ORDER))


def position(order: list[str], pattern: str) -> int:
    hits = [i for i, item in enumerate(order) if re.search(pattern, item)]
    assert hits, f"{pattern!r} is not in {order}"
    return hits[0]


def position_item(order: list[str], pattern: str) -> str:
    return order[position(order, pattern)]


def assert_in_order(order: list[str], *patterns: str) -> None:
    """Each pattern's first item comes strictly after the previous pattern's."""
    at = [position(order, p) for p in patterns]
    assert at == sorted(at) and len(set(at)) == len(at), f"{list(zip(patterns, at, strict=True))} in {order}"


def wait_for_answers(page: Page, count: int) -> None:
    """A turn is done when its answer's usage line is shown."""
    expect(page.get_by_text(USAGE)).to_have_count(count)


def thread_url(page: Page) -> str:
    expect(page).to_have_url(re.compile(r"/thread/"))
    return page.url


def reopened(page: Page, url: str, answers: int) -> list[str]:
    page.goto(url)
    wait_for_answers(page, answers)
    return dom_order(page)


BATCH = ("user:list my files and search for milk", "text:I'll list your files and search",
         "step:list_files", "step:search_files",
         # the answer that used the results (another test of this module's server may have given alice files)
         "text:(You have no files yet|Here are your files)")


def test_a_parallel_batch_sits_between_its_announcement_and_the_answer(ordered: Server, browser: Browser) -> None:
    page = login(browser, ordered.url, "alice")
    send(page, "list my files and search for milk")
    wait_for_answers(page, 1)
    live = dom_order(page)
    assert_in_order(live, *BATCH)
    # the thinking before the answer sits above it
    assert re.match(r"text:(You have no files yet|Here are your files)", live[-1]), live
    assert USAGE.search(live[-1]), live  # the usage line is the answer's footer, not a message of its own
    url = thread_url(page)
    page.reload()
    wait_for_answers(page, 1)
    assert dom_order(page) == live
    assert reopened(page, url, 1) == live
    page.context.close()


def test_a_read_before_a_card_then_the_resumed_turn_after_the_click(ordered: Server, browser: Browser) -> None:
    page = login(browser, ordered.url, "alice")
    send(page, "Summarise notes/injection-demo.txt")
    expect(page.get_by_text("Approval needed")).to_be_visible()
    live = dom_order(page)
    assert_in_order(live, "user:Summarise", "text:I'll open", "step:read_file", "card:Approval needed")
    assert live[-1].startswith("card:"), live  # the card is the last thing shown
    url = thread_url(page)
    page.reload()  # the card comes back where it was, with its buttons, not above its read
    expect(page.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    after_reload = dom_order(page)
    assert_in_order(after_reload, "text:I'll open", "step:read_file", "card:Approval needed")
    cards = [x for x in after_reload if x.startswith("card:")]
    assert len(cards) == 1, after_reload  # one card, not the stored one plus a re-sent one
    page.get_by_role("button", name="Approve", exact=True).click()
    wait_for_answers(page, 1)
    resumed = dom_order(page)
    assert_in_order(resumed, "step:read_file", "card:✅ Approved by alice", "step:write_file", "this answer")
    assert [x for x in resumed if x.startswith("card:")] == [position_item(resumed, "card:✅ Approved")]
    assert reopened(page, url, 1) == resumed
    page.context.close()


def test_an_operator_decision_continues_below_the_card(ordered: Server, browser: Browser) -> None:
    notes = ordered.workspace("alice") / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "groceries.txt").write_text("milk")
    page = login(browser, ordered.url, "alice")
    send(page, "delete groceries")
    expect(page.get_by_text("Waiting for an operator to decide.")).to_be_visible()
    url = thread_url(page)
    with httpx.Client(base_url=ordered.url) as http:
        r = http.post("/login", data={"username": "olga", "password": PASSWORD})
        r.raise_for_status()
        http.cookies.set("access_token", r.cookies["access_token"])
        pending = [a for a in http.get("/operator/api/pending").json() if a["tool"] == "delete_file"]
        assert len(pending) == 1, pending
        http.post(f"/operator/api/approvals/{pending[0]['id']}", json={"decision": "approved"},
                  headers={"Origin": ordered.url}).raise_for_status()
    wait_for_answers(page, 1)
    live = dom_order(page)
    assert_in_order(live, "user:delete groceries", "text:I'll delete", "card:✅ Approved by olga", "step:delete_file",
                    "this answer")
    assert reopened(page, url, 1) == live
    page.context.close()


def test_the_order_survives_a_server_restart(tmp_path: Path, browser: Browser) -> None:
    srv = start_server(tmp_path / "data")
    try:
        srv.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        page = login(browser, srv.url, "alice")
        send(page, "list my files and search for milk")
        wait_for_answers(page, 1)
        live = dom_order(page)
        assert_in_order(live, *BATCH)
        path = re.sub(r"^https?://[^/]+", "", thread_url(page))
        page.context.close()
    finally:
        stop_server(srv)
    again = start_server(tmp_path / "data")
    try:
        page = login(browser, again.url, "alice")
        assert reopened(page, again.url + path, 1) == live
        page.context.close()
    finally:
        stop_server(again)
