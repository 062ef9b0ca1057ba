"""Two app processes behind haproxy on one PostgreSQL (tests/cluster.py), driven by real Chromium: a decision
taken on one process continues the turn live in the browser held by the other; kill -9 of the process that
showed a pending card loses nothing and runs the tool once; a deadline fires once with both processes up."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from fakeclaude import DemoModelServer, DemoSettings
from tests.cluster import Cluster, running
from tests.e2e.conftest import PASSWORD, send

pytestmark = pytest.mark.browser
SLOW_MS = 60_000  # a model call with thinking, on a 2-core machine shared with several test runs
APPROVAL_TIMEOUT_S = 60  # long enough for a loaded machine to reach the operator; the deadline test waits it out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # The shared model runs in this process, so the strict-demo check sees every request it refuses.
    model = DemoModelServer(settings=DemoSettings(first_token_delay_s=0.02, tokens_per_second=400))
    try:
        with running(tmp_path_factory.mktemp("cluster"), apps=2, model_url=model.start(),
                     extra_env={"TOLLGATE_APPROVAL_TIMEOUT_S": str(APPROVAL_TIMEOUT_S),
                                # a killed process's lease (if it died before releasing it) is free sooner
                                "TOLLGATE_DEAD_AFTER_S": "8",
                                # the console re-reads on its own only hourly: what it shows at once was pushed
                                "TOLLGATE_CONSOLE_RECHECK_S": "3600"}) as c:
            c.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
            c.cli("users", "add", "olga", "--password-stdin", "--role", "operator", stdin=PASSWORD + "\n")
            yield c
    finally:
        model.stop()


def login_on(browser: Browser, cluster: Cluster, user: str, process: str) -> Page:
    """A browser whose haproxy cookie pins it to one app process (HTTP and socket alike)."""
    context = browser.new_context(base_url=cluster.url)
    context.add_cookies([{"name": "TGSRV", "value": process, "url": cluster.url}])
    page = context.new_page()
    page.goto("/login")
    page.locator("#email").fill(user)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.locator("#chat-input")).to_be_visible()
    assert pinned_to(page) == process, "haproxy sent the browser elsewhere: was the process UP in its eyes?"
    return page


def pinned_to(page: Page) -> str:
    [cookie] = [c for c in page.context.cookies() if c["name"] == "TGSRV"]
    return cookie["value"]


def sql(cluster: Cluster, query: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(cluster.pg.libpq) as conn:
        return list(conn.execute(query, args).fetchall())


def pending_of(cluster: Cluster, user: str, tool: str) -> tuple[str, str]:
    [(approval_id, thread_id)] = sql(cluster, "SELECT a.id, a.thread_id FROM approvals a JOIN threads t ON "
                                              "t.id = a.thread_id JOIN users u ON u.id = t.owner_id WHERE "
                                              "u.name = %s AND a.tool = %s AND a.status = 'pending'", user, tool)
    return str(approval_id), str(thread_id)


def runs_of(cluster: Cluster, thread_id: str, tool: str) -> int:
    [(n,)] = sql(cluster, "SELECT count(*) FROM tool_calls WHERE thread_id = %s AND tool = %s", thread_id, tool)
    return int(str(n))


def finished_run(cluster: Cluster, thread_id: str, tool: str, timeout_s: float = 60) -> None:
    """The step shows when a tool starts; its row says when it finished (the page gives no event for that)."""
    deadline = time.monotonic() + timeout_s
    query = "SELECT count(*) FROM tool_calls WHERE thread_id = %s AND tool = %s AND status <> 'running'"
    while sql(cluster, query, thread_id, tool) == [(0,)]:
        assert time.monotonic() < deadline, f"{tool} did not finish"
        time.sleep(0.05)  # poll interval of the probe, not a wait for state


def test_an_operator_on_the_other_process_continues_alices_turn_live(cluster: Cluster, browser: Browser) -> None:
    notes = cluster.workspace("alice") / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "groceries.txt").write_text("milk")
    alice = login_on(browser, cluster, "alice", "a")
    send(alice, "delete groceries")
    expect(alice.get_by_text("Waiting for an operator to decide.")).to_be_visible(timeout=SLOW_MS)
    _, thread_id = pending_of(cluster, "alice", "delete_file")
    console = login_on(browser, cluster, "olga", "b")
    console.goto("/operator")
    card = console.locator("[data-approval]").filter(has_text="delete_file — alice")
    card.get_by_role("button", name="Approve", exact=True).click()
    # the decision was written on b; the turn runs on a, where alice's socket is, and renders there live
    expect(alice.get_by_text("Approved by olga")).to_be_visible(timeout=SLOW_MS)
    expect(alice.locator("#step-delete_file").last).to_be_visible()
    finished_run(cluster, thread_id, "delete_file")
    assert not (notes / "groceries.txt").exists()
    assert runs_of(cluster, thread_id, "delete_file") == 1
    assert (pinned_to(alice), pinned_to(console)) == ("a", "b")  # neither browser ever moved
    alice.context.close()
    console.context.close()


def test_an_open_console_on_one_process_shows_an_approval_asked_on_the_other_without_reload(
        cluster: Cluster, browser: Browser) -> None:
    notes = cluster.workspace("alice") / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "receipts.txt").write_text("old")
    console = login_on(browser, cluster, "olga", "b")
    console.goto("/operator")
    card = console.locator("[data-approval]").filter(has_text="delete_file — alice")
    # the stream's first list is rendered (cards, or "nothing waiting"): from now on only a push can add one
    expect(console.locator("#pending-list > *").first).to_be_visible(timeout=SLOW_MS)
    expect(card).to_have_count(0)
    alice = login_on(browser, cluster, "alice", "a")
    send(alice, "delete receipts")
    expect(alice.get_by_text("Waiting for an operator to decide.")).to_be_visible(timeout=SLOW_MS)
    # asked on a; the console on b was not reloaded and re-reads on its own only hourly: pushed over NOTIFY
    expect(card).to_have_count(1, timeout=SLOW_MS)
    card.get_by_role("button", name="Reject", exact=True).click()
    expect(alice.get_by_text("Rejected by olga")).to_be_visible(timeout=SLOW_MS)
    assert (notes / "receipts.txt").read_text() == "old"
    assert (pinned_to(alice), pinned_to(console)) == ("a", "b")
    alice.context.close()
    console.context.close()


def test_a_deadline_with_both_processes_up_expires_the_call_once(cluster: Cluster, browser: Browser) -> None:
    alice = login_on(browser, cluster, "alice", "b")
    send(alice, "save a note called late: nobody decides")
    expect(alice.get_by_role("button", name="Approve", exact=True)).to_be_visible(timeout=SLOW_MS)
    approval_id, thread_id = pending_of(cluster, "alice", "write_file")
    # nobody decides: at the deadline one process resumes the thread, the card says so, the model hears it once
    expect(alice.get_by_text("⌛ Expired — not run")).to_be_visible(timeout=(APPROVAL_TIMEOUT_S + 60) * 1000)
    [(status,)] = sql(cluster, "SELECT status FROM approvals WHERE id = %s", approval_id)
    assert status == "expired" and runs_of(cluster, thread_id, "write_file") == 0
    results = sql(cluster, "SELECT count(*) FROM messages WHERE thread_id = %s AND role = 'user' AND "
                           "content_json LIKE %s", thread_id, "%before the approval expired%")
    assert results == [(1,)]  # one expiry, one tool_result, whatever both processes saw
    assert sql(cluster, "SELECT count(*) FROM due_resumes WHERE thread_id = %s", thread_id) == [(0,)]
    assert not (cluster.workspace("alice") / "notes" / "late.txt").exists()
    alice.context.close()


def test_kill9_of_the_process_holding_a_pending_card(cluster: Cluster, browser: Browser) -> None:
    alice = login_on(browser, cluster, "alice", "a")
    send(alice, "save a note called survivor: still here")
    expect(alice.get_by_role("button", name="Approve", exact=True)).to_be_visible(timeout=SLOW_MS)
    _, thread_id = pending_of(cluster, "alice", "write_file")
    port = cluster.port_of("a")
    victim = cluster.apps["a"]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    try:
        # alice reloads her thread: haproxy sends her to the survivor, which shows the card from the store
        alice.goto(f"/thread/{thread_id}")
        expect(alice.get_by_role("button", name="Approve", exact=True)).to_be_visible(timeout=SLOW_MS)
        assert pinned_to(alice) == "b"
        alice.get_by_role("button", name="Approve", exact=True).click()
        expect(alice.locator("#step-write_file").last).to_be_visible(timeout=60_000)
        finished_run(cluster, thread_id, "write_file")
        note = cluster.workspace("alice") / "notes" / "survivor.txt"
        assert note.read_text() == "still here"
        assert runs_of(cluster, thread_id, "write_file") == 1
    finally:
        alice.context.close()
        cluster.start_app("a", port=port)  # the other tests expect both processes
