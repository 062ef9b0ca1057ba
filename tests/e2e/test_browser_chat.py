"""End to end in a real browser against a real chainlit server and the embedded demo model."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import Server, login, send

pytestmark = pytest.mark.browser


def test_login_refuses_a_wrong_password(server: Server, browser: Browser) -> None:
    page = browser.new_page(base_url=server.url)
    page.goto("/login")
    page.locator("#email").fill("alice")
    page.locator("#password").fill("wrong")
    page.get_by_role("button", name="Sign In").click()
    expect(page.locator("#chat-input")).to_have_count(0)
    expect(page).to_have_url(re.compile("/login"))
    page.close()


def test_approve_runs_the_tool_and_the_agent_continues(server: Server, browser: Browser) -> None:
    page = login(browser, server.url, "alice")
    send(page, "save a note called a: hello")
    first = page.locator("[data-step-type='assistant_message']").first
    expect(first).to_contain_text("save")
    expect(page.get_by_text("Approval needed")).to_be_visible()
    expect(page.get_by_text('"path": "notes/a.txt"').first).to_be_visible()
    assert not (server.workspace("alice") / "notes" / "a.txt").exists()
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator("#step-write_file").last).to_be_visible()
    expect(page.get_by_text("Approved by alice")).to_be_visible()
    expect(page.get_by_text(re.compile(r"this answer \$"))).to_be_visible()
    assert (server.workspace("alice") / "notes" / "a.txt").read_text() == "hello"
    page.context.close()


def test_reject_does_not_run_and_the_model_is_told(server: Server, browser: Browser) -> None:
    page = login(browser, server.url, "bob")
    send(page, "save a note called b: nope")
    page.get_by_role("button", name="Reject", exact=True).click()
    expect(page.get_by_text("Rejected by bob")).to_be_visible()
    # The demo model answers this only when its tool_result is an is_error rejection.
    expect(page.get_by_text("I did not do that")).to_be_visible()
    expect(page.locator("#step-write_file")).to_have_count(0)
    assert not (server.workspace("bob") / "notes" / "b.txt").exists()
    page.context.close()


def test_text_streams_in_before_the_answer_is_complete(server: Server, browser: Browser) -> None:
    page = login(browser, server.url, "alice")
    send(page, "tell me something long [long:600]")
    # Observed partial text: some of the answer is visible while the rest is still arriving.
    page.wait_for_function(
        """() => { const m = [...document.querySelectorAll("[data-step-type='assistant_message']")].pop();
                   return m && m.innerText.length > 20 && m.innerText.length < 1500; }""")
    expect(page.get_by_text(re.compile(r"this answer \$"))).to_be_visible(timeout=30_000)
    texts = page.locator("[data-step-type='assistant_message']").all_inner_texts()
    assert max(len(t) for t in texts) > 1500
    page.context.close()


def test_read_only_tool_shows_a_step_without_asking(server: Server, browser: Browser) -> None:
    page = login(browser, server.url, "alice")
    send(page, "list my files")
    expect(page.locator("#step-list_files").last).to_be_visible()
    expect(page.get_by_text("Approval needed")).to_have_count(0)
    # Claude 5.x: the model's thinking is a step of its own, before the tool step it led to.
    thought = page.locator("#step-Thought")
    expect(thought.first).to_be_visible()
    ids = page.locator("[id^='step-']").evaluate_all("els => els.map(e => e.id)")
    last_tool = len(ids) - 1 - ids[::-1].index("step-list_files")
    assert "step-Thought" in ids[:last_tool], ids
    page.context.close()


def test_pending_approval_survives_a_reload_and_runs_once(server: Server, browser: Browser) -> None:
    page = login(browser, server.url, "alice")
    send(page, "save a note called durable: kept")
    expect(page.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    expect(page).to_have_url(re.compile(r"/thread/[0-9a-f-]+$"))
    thread_url = page.url
    page.reload()
    expect(page).to_have_url(thread_url)
    expect(page.get_by_role("button", name="Approve", exact=True)).to_be_enabled()
    assert not (server.workspace("alice") / "notes" / "durable.txt").exists()
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_text("Approved by alice").last).to_be_visible()
    expect(page.locator("#step-write_file").last).to_be_visible()
    assert (server.workspace("alice") / "notes" / "durable.txt").read_text() == "kept"
    page.context.close()


def test_sidebar_lists_only_my_threads(server: Server, browser: Browser) -> None:
    page = login(browser, server.url, "bob")
    send(page, "list my files")
    expect(page.locator("#step-list_files").last).to_be_visible()
    page.goto("/")
    expect(page.locator("a[href^='/thread/']").first).to_be_visible()
    titles = page.locator("a[href^='/thread/']").all_inner_texts()
    assert any("list my files" in t for t in titles)
    assert not any("called a: hello" in t or "called durable" in t for t in titles)  # alice's never show here
    page.context.close()


def test_injected_instruction_is_stopped_at_the_card(server: Server, browser: Browser) -> None:
    """The starter seeds a booby-trapped file; the demo model obeys it (worst case); the gate holds."""
    page = login(browser, server.url, "bob")
    page.get_by_text("Try a prompt injection").click()
    expect(page.get_by_text("Approval needed")).to_be_visible()
    expect(page.get_by_text("Untrusted content is in this conversation")).to_be_visible()
    expect(page.get_by_text("read_file:notes/injection-demo.txt").first).to_be_visible()
    before = (server.workspace("bob") / "notes" / "groceries.txt").read_text()
    page.get_by_role("button", name="Reject", exact=True).click()
    expect(page.get_by_text("Rejected by bob")).to_be_visible()
    assert (server.workspace("bob") / "notes" / "groceries.txt").read_text() == before == "milk, eggs, bread\n"
    page.context.close()
