"""Operators: routed approvals decided in the console, live in the user's chat; 403 for everyone else."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import PASSWORD, Server, login, send

pytestmark = pytest.mark.browser

CONSOLE_ROUTES = [("GET", "/operator"), ("GET", "/operator/api/pending"), ("GET", "/operator/api/pending/stream"),
                  ("GET", "/operator/api/audit"), ("GET", "/operator/api/usage"), ("GET", "/operator/api/budgets"),
                  ("POST", "/operator/api/approvals/0123"), ("POST", "/operator/api/budgets/alice"),
                  ("GET", "/operator/thread/0123"), ("GET", "/operator/api/thread/0123/trace"),
                  ("GET", "/operator/api/mcp")]


@pytest.fixture(scope="module")
def olga(server: Server) -> str:
    if "olga" not in server.cli("users", "list"):
        server.cli("users", "add", "olga", "--password-stdin", "--role", "operator", stdin=PASSWORD + "\n")
    return "olga"


_cookies: dict[str, dict[str, str]] = {}


def cookie(server: Server, user: str) -> dict[str, str]:
    if user not in _cookies:  # one login per user: password hashing is deliberately slow
        r = httpx.post(server.url + "/login", data={"username": user, "password": PASSWORD})
        r.raise_for_status()
        _cookies[user] = {"access_token": r.cookies["access_token"]}
    return _cookies[user]


@pytest.mark.parametrize(("method", "path"), CONSOLE_ROUTES)
def test_non_operators_get_403_everywhere(server: Server, olga: str, method: str, path: str) -> None:
    body = {"decision": "approved"} if "approvals" in path else {"daily_usd": "100", "monthly_usd": "100"}
    with httpx.Client(base_url=server.url, cookies=cookie(server, "bob")) as http:
        r = http.request(method, path, json=body if method == "POST" else None)
        assert r.status_code == 403
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.request(method, path, json=body if method == "POST" else None).status_code == 401
    with httpx.Client(base_url=server.url, cookies=cookie(server, olga)) as http, \
            http.stream(method, path, json=body if method == "POST" else None) as r:  # the push stream stays open
        assert r.status_code != 403


def test_operator_approves_live_and_the_users_chat_continues(server: Server, browser: Browser, olga: str) -> None:
    notes = server.workspace("alice") / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "groceries.txt").write_text("milk")
    console = login(browser, server.url, olga)
    asked: list[str] = []
    console.on("request", lambda r: asked.append(r.url.removeprefix(server.url)))
    console.goto("/operator")
    expect(console.get_by_text("Pending approvals")).to_be_visible()
    expect(console.locator("#live")).to_have_text("live")
    user = login(browser, server.url, "alice")
    send(user, "delete groceries")
    expect(user.get_by_text("Waiting for an operator to decide.")).to_be_visible()
    expect(user.get_by_role("button", name="Approve", exact=True)).to_have_count(0)  # not the user's to decide
    card = console.locator("[data-approval]").filter(has_text="delete_file — alice")
    expect(card).to_be_visible()  # arrived without a reload
    expect(card).to_contain_text("notes/groceries.txt")
    card.get_by_role("button", name="Approve", exact=True).click()
    expect(card).to_have_count(0)  # decided: gone from the open page, no reload
    expect(user.get_by_text("Approved by olga")).to_be_visible()  # the user's chat goes on by itself
    expect(user.locator("#step-delete_file").last).to_be_visible()
    assert not (notes / "groceries.txt").exists()
    # Pushed, not polled: one stream request, the list itself never fetched, no page reload.
    assert asked.count("/operator/api/pending/stream") == 1, asked
    assert "/operator/api/pending" not in asked and asked.count("/operator") == 1, asked
    user.context.close()
    console.context.close()


def test_the_owner_can_veto_an_operator_routed_call(server: Server, browser: Browser, olga: str) -> None:
    notes = server.workspace("alice") / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "vetoed.txt").write_text("mine")
    console = login(browser, server.url, olga)
    console.goto("/operator")
    user = login(browser, server.url, "alice")
    send(user, "delete vetoed")
    card = console.locator("[data-approval]").filter(has_text="notes/vetoed.txt")
    expect(card).to_be_visible()
    expect(user.get_by_text("You can still reject it yourself.")).to_be_visible()
    expect(user.get_by_role("button", name="Approve", exact=True)).to_have_count(0)  # approval is the operator's
    user.get_by_role("button", name="Reject", exact=True).last.click()
    expect(user.get_by_text(re.compile("Rejected by alice"))).to_be_visible()  # the turn goes on at once
    expect(card).to_have_count(0)  # no longer pending for the operator
    assert (notes / "vetoed.txt").read_text() == "mine"
    user.context.close()
    console.context.close()


def test_operator_rejects_with_a_reason_the_model_sees(server: Server, browser: Browser, olga: str) -> None:
    notes = server.workspace("alice") / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "keepme.txt").write_text("precious")
    console = login(browser, server.url, olga)
    console.goto("/operator")
    user = login(browser, server.url, "alice")
    send(user, "delete keepme")
    card = console.locator("[data-approval]").filter(has_text="notes/keepme.txt")
    expect(card).to_be_visible()
    card.get_by_placeholder("reason (sent to the model)").fill("not allowed on Mondays")
    card.get_by_role("button", name="Reject", exact=True).click()
    expect(user.get_by_text(re.compile("Rejected by olga — not allowed on Mondays"))).to_be_visible()
    expect(user.get_by_text("I did not do that")).to_be_visible()
    assert (notes / "keepme.txt").read_text() == "precious"
    with httpx.Client(base_url=server.url, cookies=cookie(server, olga)) as http:
        audit = http.get("/operator/api/audit", params={"tool": "delete_file", "status": "rejected"}).json()["rows"]
        [row] = [a for a in audit if a["args"] == {"path": "notes/keepme.txt"}]
        assert row["decided_by"] == "olga" and row["reason"] == "not allowed on Mondays"
        page = http.get(f"/operator/thread/{row['thread']}").text
        assert "not allowed on Mondays" in page  # the tool_result the model got carries the reason
        trace = http.get(f"/operator/api/thread/{row['thread']}/trace").json()
        assert json.dumps(trace) and trace["approvals"][0]["decided_via"] == "console"
    user.context.close()
    console.context.close()
