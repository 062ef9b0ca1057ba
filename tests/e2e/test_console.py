"""The operator console as a product page: pushed approvals (also from another process), a stream strangers
get nothing from, a paged and filtered audit, charts from the vendored library, the read-only thread view,
and hostile text inert everywhere it renders."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import PASSWORD, ROOT, Server, login, send, start_server
from tests.e2e.console_seed import HOSTILE
from tests.e2e.test_operator import cookie

pytestmark = pytest.mark.browser
STREAM = "/operator/api/pending/stream"


@pytest.fixture(scope="module")
def olga(server: Server) -> str:
    if "olga" not in server.cli("users", "list"):
        server.cli("users", "add", "olga", "--password-stdin", "--role", "operator", stdin=PASSWORD + "\n")
    return "olga"


def seed(server: Server, *args: str) -> Any:
    """Write to the server's database from another process: no wake-up reaches the server from there."""
    done = subprocess.run([sys.executable, "-m", "tests.e2e.console_seed", *args], env=server.env, cwd=ROOT,
                          capture_output=True, check=True, timeout=60)
    return json.loads(done.stdout)


def first_event(lines: Iterator[str]) -> tuple[str, Any]:
    """The next event from an open stream's lines (keep the iterator: dropping it closes the response)."""
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event:
            return event, json.loads(line.removeprefix("data: "))
    raise AssertionError("the stream ended without an event")


def no_injection(page: Page) -> None:
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("img[src=x], script:not([src]), svg[onload]")).to_have_count(0)


def test_the_stream_answers_only_a_same_origin_operator(server: Server, olga: str) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as anonymous, anonymous.stream("GET", STREAM) as r:
        assert r.status_code == 401 and r.read()
    with httpx.Client(base_url=server.url, cookies=cookie(server, "bob"), timeout=20) as http, \
            http.stream("GET", STREAM) as r:
        assert r.status_code == 403
    with httpx.Client(base_url=server.url, cookies=cookie(server, olga), timeout=20) as http:
        for headers in ({"Origin": "http://127.0.0.1:1"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                        {"Sec-Fetch-Site": "same-site"}):
            with http.stream("GET", STREAM, headers=headers) as r:
                assert r.status_code == 403, headers
        with http.stream("GET", STREAM, headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            kind, items = first_event(r.iter_lines())
            assert kind == "pending" and isinstance(items, list)


ATTACK = """<!doctype html><script>
window.log = []; window.done = false;
const es = new EventSource("%(base)s/operator/api/pending/stream", {withCredentials: true});
es.onmessage = (e) => log.push("message");
es.addEventListener("pending", (e) => log.push("pending " + e.data.slice(0, 40)));
es.onerror = () => { log.push("error " + es.readyState); if (es.readyState === 2) window.done = true; };
fetch("%(base)s/operator/api/pending", {credentials: "include"}).then(
  (r) => r.text().then((t) => log.push("fetch read " + t.slice(0, 40))), () => log.push("fetch refused"));
</script>"""


@pytest.fixture
def attacker(server: Server) -> Iterator[str]:
    page = (ATTACK % {"base": server.url}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/evil.html"
    httpd.shutdown()
    httpd.server_close()


def test_a_page_on_another_origin_gets_nothing_from_the_stream(server: Server, browser: Browser, olga: str,
                                                               attacker: str) -> None:
    seeded = seed(server, "pending")  # something the attacker would like to read
    console = login(browser, server.url, olga)  # her cookie is in this browser context
    evil = console.context.new_page()
    evil.goto(attacker)
    evil.wait_for_function("window.done === true && window.log.some(l => l.startsWith('fetch'))")
    log = evil.evaluate("window.log")
    assert not any(line.startswith(("pending", "message", "fetch read")) for line in log), log
    seed(server, "decide", seeded["approval"])
    console.context.close()


def test_an_approval_from_another_process_arrives_inert_links_its_thread_and_leaves(
        server: Server, browser: Browser, olga: str) -> None:
    console = login(browser, server.url, olga)
    console.goto("/operator")
    expect(console.locator("#live")).to_have_text("live")
    seeded = seed(server, "pending")  # written by another process: arrives on the re-check, no reload
    card = console.locator(f"[data-approval='{seeded['approval']}']")
    expect(card).to_be_visible()
    expect(card).to_contain_text("delete_file<img src=x onerror=window.__pwned=5> — alice")
    expect(card).to_contain_text(HOSTILE[1])
    expect(card).to_contain_text("approve. <U+202E>gpj.exe<U+202C>")  # the reordering is shown, not applied
    expect(card).to_contain_text("Untrusted content in context: " + HOSTILE[4])
    no_injection(console)
    with console.expect_navigation():
        card.get_by_role("link", name="Open the thread (read-only)").click()
    assert console.url.endswith(f"/operator/thread/{seeded['thread']}")
    expect(console.get_by_role("heading", name=re.compile("Thread"))).to_be_visible()
    console.go_back()
    expect(console.locator("#live")).to_have_text("live")
    expect(card).to_be_visible()
    seed(server, "decide", seeded["approval"])  # decided elsewhere: gone from the open page
    expect(card).to_have_count(0)
    console.context.close()


def test_the_audit_pages_in_a_stable_order_and_filters(server: Server, olga: str) -> None:
    seeded = seed(server, "audit", "paging_probe")
    with httpx.Client(base_url=server.url, cookies=cookie(server, olga), timeout=20) as http:
        rows, after, pages = [], None, 0
        while True:
            page = http.get("/operator/api/audit", params={"tool": "paging_probe", "limit": 5,
                                                           **({"after": after} if after else {})}).json()
            rows += page["rows"]
            pages += 1
            if not (after := page["next"]):
                break
        ids = [r["id"] for r in rows]
        assert pages == 3 and len(ids) == 13 == len(set(ids))  # every decision exactly once
        assert ids[0] == seeded["hostile"] and ids[1:] == sorted(seeded["tied"], reverse=True)  # ties: by id
        assert rows[0]["reason"] == HOSTILE[0] + " " + HOSTILE[2] and rows[0]["args"]["path"] == HOSTILE[1]

        def ids_where(**params: str) -> list[str]:
            return [r["id"] for r in http.get("/operator/api/audit", params={"tool": "paging_probe", **params})
                    .json()["rows"]]

        assert ids_where(status="rejected") == [seeded["hostile"]]
        assert ids_where(status="approved", since="2017-07-14", until="2017-07-14") == ids[1:]  # 1.5e9 is that day
        assert ids_where(until="2017-07-13") == [] and ids_where(user="bob") == []
        assert set(ids_where(user="alice")) == set(ids)
        for bad in ({"after": "nonsense"}, {"after": "1.5e9~x' OR 1=1"}, {"since": "yesterday"},
                    {"status": "pending"}, {"until": "2017-13-01"}):
            r = http.get("/operator/api/audit", params=bad)
            assert r.status_code == 400 and r.json()["detail"], bad


def test_the_audit_table_pages_in_the_browser_and_shows_hostile_text_as_text(
        server: Server, browser: Browser, olga: str) -> None:
    seeded = seed(server, "audit", "browser_probe")
    console = login(browser, server.url, olga)
    console.goto("/operator")
    form = console.locator("#audit-form")
    form.get_by_placeholder("tool").fill("browser_probe")
    form.get_by_label("per page").select_option("10")
    form.get_by_role("button", name="Filter").click()
    rows = console.locator("#audit-rows tr[data-audit]")
    expect(rows).to_have_count(10)
    hostile = console.locator(f"tr[data-audit='{seeded['hostile']}']")
    expect(hostile).to_contain_text(HOSTILE[0])  # the reason, as text
    expect(hostile).to_contain_text(HOSTILE[1])  # the arguments, as text
    no_injection(console)
    console.get_by_role("button", name="Older").click()
    expect(rows).to_have_count(3)
    expect(console.locator("#audit-page")).to_have_text("page 2")
    expect(console.get_by_role("button", name="Older")).to_be_disabled()
    console.get_by_role("button", name="Newer").click()
    expect(rows).to_have_count(10)
    expect(hostile).to_be_visible()
    console.context.close()


def test_the_thread_view_is_read_only_for_operators_and_closed_to_everyone_else(
        server: Server, browser: Browser, olga: str) -> None:
    tid = seed(server, "thread")["thread"]
    path = f"/operator/thread/{tid}"
    assert httpx.get(server.url + path).status_code == 401
    for user in ("alice", "bob"):  # the owner is not an operator either: this view is the operators'
        assert httpx.get(server.url + path, cookies=cookie(server, user)).status_code == 403
    assert httpx.get(server.url + "/operator/thread/" + "0" * 32, cookies=cookie(server, olga)).status_code == 404
    page = login(browser, server.url, olga)
    page.goto(path)
    main = page.locator("main")
    expect(main).to_contain_text("Tool step delete_file<img src=x onerror=window.__pwned=5>")
    expect(main).to_contain_text(HOSTILE[0])
    expect(main).to_contain_text(HOSTILE[1])
    expect(main).to_contain_text("Tool error")
    expect(main).to_contain_text("line one\nline two<U+2028>three")
    no_injection(page)
    expect(page.locator("form, button, input, textarea, select, script")).to_have_count(0)  # nothing acts
    page.context.close()


def test_spend_charts_come_from_the_vendored_library_in_the_chats_look(server: Server, browser: Browser,
                                                                       olga: str) -> None:
    user = login(browser, server.url, "alice")
    send(user, "list my files")
    expect(user.get_by_text("this answer $").first).to_be_visible()  # a settled model call
    user.context.close()
    for scheme, background in (("light", "rgb(255, 255, 255)"), ("dark", "rgb(33, 33, 33)")):
        page = login(browser, server.url, olga)
        page.emulate_media(color_scheme=scheme)
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url))  # noqa: B023 (one page per loop turn)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))  # noqa: B023
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # noqa: B023
        response = page.goto("/operator")
        assert response is not None
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        # Not wait_for_function: it evaluates a string in the page, which this CSP (no 'unsafe-eval') refuses.
        expect(page.locator("body[data-charts]:not([data-charts='0'])")).to_have_count(1)
        labels = page.evaluate("Chart.getChart(document.querySelector('#chart-users')).data.labels")
        spent = page.evaluate("Chart.getChart(document.querySelector('#chart-users')).data.datasets[0].data")
        assert "alice" in labels and spent[labels.index("alice")] > 0
        assert page.evaluate("Chart.version") == "4.5.1"
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background
        assert all(u.startswith(server.url) for u in asked), asked  # nothing from a CDN
        assert errors == [], errors
        page.context.close()


def test_static_files_are_a_fixed_list(server: Server) -> None:
    ok = httpx.get(server.url + "/operator/static/vendor/chart.umd.min.js")
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/javascript")
    assert ok.headers["x-content-type-options"] == "nosniff"
    for path in ("/operator/static/../operator.py", "/operator/static/%2e%2e/operator.py", "/operator/static/",
                 "/operator/static/vendor", "/operator/static/console.css/", "/operator/static//etc/passwd"):
        r = httpx.get(server.url + path)
        assert r.status_code == 404 or "def " not in r.text, path


def test_an_open_console_stream_does_not_hold_the_servers_shutdown(tmp_path: Any) -> None:
    """Uvicorn waits for open responses before it stops; the stream must end on SIGTERM (it held it 40 s+)."""
    own = start_server(tmp_path / "data")
    try:
        own.cli("users", "add", "olga", "--password-stdin", "--role", "operator", stdin=PASSWORD + "\n")
        login_r = httpx.post(own.url + "/login", data={"username": "olga", "password": PASSWORD})
        with httpx.Client(base_url=own.url, cookies={"access_token": login_r.cookies["access_token"]},
                          timeout=30) as http, http.stream("GET", STREAM) as r:
            lines = r.iter_lines()  # held open, as a browser holds its EventSource
            assert first_event(lines)[0] == "pending"
            started = time.monotonic()
            own.proc.terminate()
            own.proc.wait(timeout=20)  # raises TimeoutExpired if the stream holds the shutdown
            assert time.monotonic() - started < 20
    finally:
        if own.proc.poll() is None:
            own.proc.kill()
            own.proc.wait()
