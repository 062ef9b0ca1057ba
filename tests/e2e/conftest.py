"""A real server (`tollgate serve`: Tollgate's app mounting Chainlit, ui/web.py) on a free port, and Debian's Chromium
driven by Playwright."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "correct horse"
expect.set_options(timeout=20_000)  # a shared 2-core machine: allow for load, the waits are on events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def workspace(self, user: str) -> Path:
        return self.data_dir / "workspaces" / user

    def cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run([str(BIN / "tollgate"), *args], input=stdin.encode(), env=self.env, cwd=ROOT,
                              capture_output=True, check=True, timeout=60)
        return done.stdout.decode()


def start_server(data_dir: Path, extra_env: dict[str, str] | None = None, entry: str | None = None,
                 port: int | None = None, ready_timeout_s: float = 90, command: list[str] | None = None,
                 cwd: Path = ROOT) -> Server:
    """`tollgate serve` with the embedded demo model unless `extra_env` sets ANTHROPIC_API_KEY: a key
    inherited from the shell never leaks into tests, one passed here is used. `port`: a restart on the same one.
    `entry`: a Python script run instead (given --host and --port), e.g. one that profiles ui.web.main.
    `command` (given --host and --port) and `cwd`: another server altogether, e.g. bench/'s floor app."""
    port = port or free_port()
    inherited = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "CHAINLIT_AUTH_SECRET")}
    env = {**inherited, "TOLLGATE_DATA_DIR": str(data_dir), "CHAINLIT_HOST": "127.0.0.1",
           "CHAINLIT_PORT": str(port), "TOLLGATE_DEMO_FIRST_TOKEN_MS": "20", "TOLLGATE_DEMO_TOKENS_PER_SEC": "400",
           **(extra_env or {})}
    log = data_dir.parent / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        command = command or ([str(BIN / "tollgate"), "serve"] if entry is None else [sys.executable, entry])
        proc = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(port)], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    server = Server(url=f"http://127.0.0.1:{port}", data_dir=data_dir, proc=proc, log=log, env=env)
    deadline = time.monotonic() + ready_timeout_s
    while True:  # readiness is an observable event: the first 200 from the server
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"server did not start: {log.read_text()[-3000:]}")
        time.sleep(0.1)  # poll interval of the readiness probe, not a wait for state


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@contextlib.contextmanager
def serving(data_dir: Path, extra_env: dict[str, str] | None = None, *, users: tuple[str, ...] = ("alice",),
            operators: tuple[str, ...] = ()) -> Iterator[Server]:
    """A server of its own with these logins (password PASSWORD), stopped afterwards even if adding them fails."""
    srv = start_server(data_dir, extra_env)
    try:
        for name, role in [(u, "user") for u in users] + [(o, "operator") for o in operators]:
            srv.cli("users", "add", name, "--password-stdin", "--role", role, stdin=PASSWORD + "\n")
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("e2e") / "data", users=("alice", "bob")) as srv:
        yield srv


# Module scope: sync Playwright keeps an event loop running in this thread while it is open, which
# would break every asyncio test collected after the browser tests.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


def login(browser: Browser, base_url: str, user: str) -> Page:
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/login")
    page.locator("#email").fill(user)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.locator("#chat-input")).to_be_visible()
    return page


def send(page: Page, text: str) -> None:
    page.locator("#chat-input").fill(text)
    page.locator("#chat-submit").click()
