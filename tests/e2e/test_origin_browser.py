"""A real Chromium: the victim is logged in; a page served from the same site on another port opens the chat
socket by hand (the cookie goes along: same site) and tries to chat as her. It must get nothing."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser

from tests.e2e.conftest import PASSWORD, Server, login

pytestmark = pytest.mark.browser

# Engine.IO v4 over a raw WebSocket: open packet "0{...}", socket.io CONNECT "40{auth}", then events "42[...]".
ATTACK = """<!doctype html><script>
window.log = []; window.done = false;
const ws = new WebSocket("ws://127.0.0.1:%(port)d/ws/socket.io/?EIO=4&transport=websocket");
ws.onopen = () => log.push("open");
ws.onerror = () => log.push("error");
ws.onclose = (e) => { log.push("close " + e.code); window.done = true; };
ws.onmessage = (e) => {
  log.push("recv " + e.data.slice(0, 80));
  const auth = {sessionId: "%(session)s", clientType: "webapp", threadId: ""};
  if (e.data.startsWith("0")) ws.send('40' + JSON.stringify(auth));
  else if (e.data.startsWith("40")) {
    ws.send('42["connection_successful"]');
    ws.send('42' + JSON.stringify(["client_message", {message: {id: crypto.randomUUID(), threadId: "%(thread)s",
      name: "x", type: "user_message", output: "Save a note called stolen: leaked",
      createdAt: new Date().toISOString()}, fileReferences: null}]));
  } else if (e.data.includes("task_end") && log.some(l => l.includes("new_message"))) { window.done = true; }
  else if (e.data === "2") ws.send("3");
};
fetch("http://127.0.0.1:%(port)d/project/threads", {method: "POST", credentials: "include", mode: "no-cors",
  headers: {"Content-Type": "text/plain"}, body: "{}"})
  .then(() => log.push("fetch sent"), () => log.push("fetch failed"));
</script>"""


@pytest.fixture
def attacker(server: Server) -> Iterator[tuple[str, str]]:
    thread = str(uuid.uuid4())
    page = ATTACK % {"port": int(server.url.rsplit(":", 1)[1]), "session": uuid.uuid4(), "thread": thread}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/attack.html", thread
    httpd.shutdown()
    httpd.server_close()


def test_page_on_another_port_cannot_drive_the_victims_socket(server: Server, browser: Browser,
                                                            attacker: tuple[str, str]) -> None:
    victim = f"vic-{uuid.uuid4().hex[:8]}"
    server.cli("users", "add", victim, "--password-stdin", stdin=PASSWORD + "\n")
    page = login(browser, server.url, victim)  # her cookie is in this browser context
    url, _thread = attacker
    evil = page.context.new_page()
    evil.goto(url)
    evil.wait_for_function("window.done === true")
    log = evil.evaluate("window.log")
    assert "open" not in log, log
    assert not any(line.startswith("recv 40") for line in log), log
    with sqlite3.connect(server.data_dir / "tollgate.db") as conn:
        rows = conn.execute("SELECT t.id FROM threads t JOIN users u ON u.id = t.owner_id WHERE u.name = ?",
                            (victim,)).fetchall()
    assert rows == [], json.dumps(log)
    assert not (server.workspace(victim) / "notes" / "stolen.txt").exists()
    page.context.close()
