"""fetch_url: SSRF refusals (with a canary listener that must never be reached) and real fetches.

A Starlette page server runs under uvicorn on 127.0.0.2 and is allowed only in the positive tests'
policy. The canary listens on 127.0.0.1 and [::1], which every loopback spelling resolves to, and
counts connections; it must stay at zero for every refused URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

import tools.netguard
from tools.errors import ToolError
from tools.fetch import FetchPolicy, fetch_text, fetch_url
from tools.html_text import html_to_text
from tools.netguard import parse_url
from tools.registry import ToolContext
from tools.workspace import Workspace

PAGE_HOST = "127.0.0.2"
FAST = 5.0  # generous per-fetch budget; refusals happen long before it

PAGE_HTML = """<!doctype html><html><head><title>Shopping  list</title>
<style>body { color: red }</style><script>alert("x")</script></head>
<body><h1>Groceries</h1><p>Buy <b>milk</b> and eggs.</p>
<ul><li>one</li><li>two</li></ul>
<a href="/recipes">Recipes</a> <a href="javascript:void(0)">js</a>
<noscript>enable js</noscript></body></html>"""


# -- the page server ------------------------------------------------------------------------------


class PageServer:
    """Uvicorn in its own thread and loop, on a socket bound before start so no wait is needed."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((PAGE_HOST, 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.release: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        config = uvicorn.Config(self._app(), log_config=None, access_log=False, lifespan="off", ws="none", http="h11")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    def url(self, path: str) -> str:
        return f"http://{PAGE_HOST}:{self.port}{path}"

    async def _main(self) -> None:
        self.release = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.ready.set()
        await self.server.serve(sockets=[self.sock])

    def stop(self) -> None:
        # Let the deliberately stuck handlers finish, then shut down.
        assert self.loop is not None and self.release is not None
        self.loop.call_soon_threadsafe(self.release.set)
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()

    def _app(self) -> Starlette:
        async def page(request: Request) -> Response:
            return HTMLResponse(PAGE_HTML)

        async def plain(request: Request) -> Response:
            return PlainTextResponse("just text\n  kept as is")

        async def as_json(request: Request) -> Response:
            return JSONResponse({"milk": 2})

        async def image(request: Request) -> Response:
            return Response(b"\x89PNG\r\n\x1a\n\x00\x00", media_type="image/png")

        async def latin1(request: Request) -> Response:
            return Response("café".encode("latin-1"), media_type="text/plain; charset=iso-8859-1")

        async def untyped(request: Request) -> Response:
            return Response(b"no content type")

        async def untyped_binary(request: Request) -> Response:
            return Response(b"bin\x00ary")

        async def missing(request: Request) -> Response:
            return PlainTextResponse("gone", status_code=404)

        async def echo_host(request: Request) -> Response:
            return PlainTextResponse(f"host={request.headers['host']}")

        async def redirect(request: Request) -> Response:
            code = int(request.query_params.get("code", "302"))
            return RedirectResponse(request.query_params["to"], status_code=code)

        async def chain(request: Request) -> Response:
            n = int(request.path_params["n"])
            if n == 0:
                return PlainTextResponse("end of chain")
            return RedirectResponse(f"/chain/{n - 1}", status_code=302)

        async def endless(request: Request) -> Response:
            async def body() -> AsyncIterator[bytes]:
                for _ in range(10_000):  # 640 MB: only a client that stops reading finishes
                    # Also yields to the loop, so the server sees the client hang up and stops.
                    if await request.is_disconnected():
                        return
                    yield b"a" * 65_536

            return StreamingResponse(body(), media_type="text/plain")

        async def slow_headers(request: Request) -> Response:
            assert self.release is not None
            await self.release.wait()
            return PlainTextResponse("too late")

        async def slow_body(request: Request) -> Response:
            async def body() -> AsyncIterator[bytes]:
                yield b"first chunk "
                assert self.release is not None
                await self.release.wait()
                yield b"too late"

            return StreamingResponse(body(), media_type="text/plain")

        return Starlette(
            routes=[
                Route("/page", page),
                Route("/plain", plain),
                Route("/json", as_json),
                Route("/image", image),
                Route("/latin1", latin1),
                Route("/untyped", untyped),
                Route("/untyped-binary", untyped_binary),
                Route("/missing", missing),
                Route("/echo-host", echo_host),
                Route("/redirect", redirect),
                Route("/chain/{n}", chain),
                Route("/endless", endless),
                Route("/slow-headers", slow_headers),
                Route("/slow-body", slow_body),
            ]
        )


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    server = PageServer()
    server.thread.start()
    assert server.ready.wait(timeout=30)
    yield server
    server.stop()


# -- the canary -----------------------------------------------------------------------------------


@dataclass
class Canary:
    port: int
    port6: int
    hits: int = 0
    servers: list[asyncio.Server] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = b""
        try:
            first = await reader.readline()
            if first.startswith(b"SYNC"):
                writer.write(b"SYNCED\n")
            else:
                self.hits += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
                    b"Connection: close\r\n\r\nCANARY"
                )
            await writer.drain()
        except ConnectionError:
            self.hits += 0 if first.startswith(b"SYNC") else 1
        finally:
            writer.close()

    async def settled_hits(self) -> int:
        """Hits after every earlier connection has been handled (accepts are served in order)."""
        for host, port in (("127.0.0.1", self.port), ("::1", self.port6)):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"SYNC\n")
            assert await reader.readline() == b"SYNCED\n"
            writer.close()
            await writer.wait_closed()
        return self.hits


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    c = Canary(0, 0)

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        # Counted before the first await, so a connection is counted as soon as it is accepted.
        await c.handle(r, w)

    v4 = await asyncio.start_server(handler, "127.0.0.1", 0)
    v6 = await asyncio.start_server(handler, "::1", 0)
    c.servers = [v4, v6]
    c.port = v4.sockets[0].getsockname()[1]
    c.port6 = v6.sockets[0].getsockname()[1]
    yield c
    for s in c.servers:
        s.close()
        await s.wait_closed()


def _fill(template: str, canary: Canary, pages: PageServer | None = None) -> str:
    out = template.replace("{cp}", str(canary.port)).replace("{cp6}", str(canary.port6))
    if pages is not None:
        out = out.replace("{pp}", str(pages.port))
    return out


async def test_canary_counts_when_allowed(canary: Canary) -> None:
    """Positive control: with loopback allowed the canary is reached, so zero hits elsewhere means
    the refusal, not a broken canary."""
    policy = FetchPolicy(allow_addresses=("127.0.0.1", "::1"), timeout_s=FAST)
    assert await fetch_text(f"http://127.0.0.1:{canary.port}/", policy) == (
        f"Fetched http://127.0.0.1:{canary.port}/ (text/plain)\n\nCANARY"
    )
    await fetch_text(f"http://[::1]:{canary.port6}/", policy)
    await fetch_text(f"http://2130706433:{canary.port}/", policy)
    assert await canary.settled_hits() == 3


# -- the SSRF corpus ------------------------------------------------------------------------------

BLOCKED = "non-public address"
SSRF_CORPUS: list[tuple[str, str]] = [
    # loopback spellings that really reach the canary
    ("http://127.0.0.1:{cp}/", BLOCKED),
    ("https://127.0.0.1:{cp}/", BLOCKED),
    ("HTTP://127.0.0.1:{cp}/", BLOCKED),
    ("http://127.0.0.1:{cp}#@evil.example/", BLOCKED),
    ("http://localhost:{cp}/", BLOCKED),
    ("http://LocalHost:{cp}/", BLOCKED),
    ("http://localhost.:{cp}/", ""),  # resolvable or not depending on the resolver
    ("http://127.1:{cp}/", BLOCKED),
    ("http://127.0.1:{cp}/", BLOCKED),
    ("http://2130706433:{cp}/", BLOCKED),
    ("http://0x7f000001:{cp}/", BLOCKED),
    ("http://0x7f.1:{cp}/", BLOCKED),
    ("http://0x7F.0.0.1:{cp}/", BLOCKED),
    ("http://017700000001:{cp}/", BLOCKED),
    ("http://0177.0.0.1:{cp}/", ""),
    ("http://127.000.000.001:{cp}/", ""),
    ("http://0.0.0.0:{cp}/", BLOCKED),
    ("http://0:{cp}/", BLOCKED),
    ("http://[::1]:{cp6}/", BLOCKED),
    ("http://[0:0:0:0:0:0:0:1]:{cp6}/", BLOCKED),
    ("http://[::]:{cp6}/", BLOCKED),
    ("http://[::ffff:127.0.0.1]:{cp}/", BLOCKED),
    ("http://[::ffff:7f00:1]:{cp}/", BLOCKED),
    ("http://[0:0:0:0:0:ffff:127.0.0.1]:{cp}/", BLOCKED),
    ("http://[::127.0.0.1]:{cp}/", BLOCKED),
    ("http://[64:ff9b::7f00:1]:{cp}/", BLOCKED),
    ("http://[2002:7f00:1::]:{cp}/", BLOCKED),
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{cp}/", BLOCKED),
    # metadata, private, shared, link-local, multicast, reserved
    ("http://169.254.169.254/latest/meta-data/", BLOCKED),
    ("http://169.254.169.254:80/computeMetadata/v1/", BLOCKED),
    ("http://2852039166/", BLOCKED),
    ("http://0xa9fea9fe/", BLOCKED),
    ("http://169.254.43518/", BLOCKED),
    ("http://0xA9.0xFE.0xA9.0xFE/", BLOCKED),
    ("http://[::ffff:169.254.169.254]/", BLOCKED),
    ("http://[64:ff9b::a9fe:a9fe]/", BLOCKED),
    ("http://[2002:a9fe:a9fe::]/", BLOCKED),
    ("http://[fe80::1]/", BLOCKED),
    ("http://[fe80::a9fe:a9fe]/", BLOCKED),
    ("http://[fe80::1%25lo]/", ""),
    ("http://10.0.0.1/", BLOCKED),
    ("http://10.1/", BLOCKED),
    ("http://10.255.255.254:8080/", BLOCKED),
    ("http://172.16.0.1/", BLOCKED),
    ("http://172.31.255.254/", BLOCKED),
    ("http://192.168.0.1/", BLOCKED),
    ("http://192.168.1.1:8443/admin", BLOCKED),
    ("http://[::ffff:10.0.0.1]/", BLOCKED),
    ("http://[::ffff:192.168.1.1]/", BLOCKED),
    ("http://100.64.0.1/", BLOCKED),
    ("http://100.127.255.254/", BLOCKED),
    ("http://[fc00::1]/", BLOCKED),
    ("http://[fd00::1]/", BLOCKED),
    ("http://[fd12:3456:789a::1]/", BLOCKED),
    ("http://[fec0::1]/", BLOCKED),
    ("http://224.0.0.1/", BLOCKED),
    ("http://239.255.255.250:1900/", BLOCKED),
    ("http://[ff02::1]/", BLOCKED),
    ("http://255.255.255.255/", BLOCKED),
    ("http://240.0.0.1/", BLOCKED),
    ("http://198.18.0.1/", BLOCKED),
    ("http://192.0.2.1/", BLOCKED),
    ("http://[2001:db8::1]/", BLOCKED),
    # credentials
    ("http://user:pass@127.0.0.1:{cp}/", "credentials"),
    ("http://evil.example@127.0.0.1:{cp}/", "credentials"),
    ("http://127.0.0.1:{cp}@evil.example/", "credentials"),
    ("https://user@example.com/", "credentials"),
    # schemes
    ("file:///etc/passwd", "scheme"),
    ("file://localhost/etc/passwd", "scheme"),
    ("FILE:///etc/passwd", "scheme"),
    ("ftp://127.0.0.1:{cp}/", "scheme"),
    ("gopher://127.0.0.1:{cp}/_GET%20/", "scheme"),
    ("dict://127.0.0.1:{cp}/info", "scheme"),
    ("ldap://127.0.0.1:{cp}/", "scheme"),
    ("ws://127.0.0.1:{cp}/", "scheme"),
    ("data:text/plain,hello", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("jar:http://127.0.0.1:{cp}/x.jar!/", "scheme"),
    ("//127.0.0.1:{cp}/", "scheme"),
    ("127.0.0.1:{cp}", ""),
    ("http:///etc/passwd", "no host"),
    ("http://127.0.0.1:99999/", ""),
    ("", ""),
]


@pytest.mark.parametrize(("template", "reason"), SSRF_CORPUS)
async def test_ssrf_corpus_is_refused(canary: Canary, template: str, reason: str) -> None:
    url = _fill(template, canary)
    with pytest.raises(ToolError) as info:
        await fetch_text(url, FetchPolicy(timeout_s=FAST))
    assert reason in str(info.value)
    assert await canary.settled_hits() == 0


def test_ssrf_corpus_size() -> None:
    assert len(SSRF_CORPUS) >= 80


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://127.0.0.1:{cp}/", BLOCKED),
        ("http://localhost:{cp}/", BLOCKED),
        ("http://[::1]:{cp6}/", BLOCKED),
        ("http://2130706433:{cp}/", BLOCKED),
        ("//127.0.0.1:{cp}/", BLOCKED),
        ("http://169.254.169.254/latest/meta-data/", BLOCKED),
        ("http://[::ffff:169.254.169.254]/", BLOCKED),
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:{cp}/_x", "scheme"),
        ("http://user:pw@127.0.0.2:{pp}/plain", "credentials"),
    ],
)
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirects_are_rechecked(pages: PageServer, canary: Canary, target: str, reason: str, code: int) -> None:
    policy = FetchPolicy(allow_addresses=(PAGE_HOST,), timeout_s=FAST)
    start = pages.url("/redirect") + "?" + f"code={code}&to=" + _fill(target, canary, pages)
    with pytest.raises(ToolError) as info:
        await fetch_text(start, policy)
    assert reason in str(info.value)
    assert await canary.settled_hits() == 0


async def test_redirect_limit(pages: PageServer) -> None:
    policy = FetchPolicy(allow_addresses=(PAGE_HOST,), timeout_s=FAST, max_redirects=3)
    assert (await fetch_text(pages.url("/chain/3"), policy)).endswith("\n\nend of chain")
    with pytest.raises(ToolError, match=r"^too many redirects \(limit 3\)$"):
        await fetch_text(pages.url("/chain/4"), policy)


async def test_allowed_server_is_refused_without_the_allowlist(pages: PageServer) -> None:
    with pytest.raises(ToolError, match=BLOCKED):
        await fetch_text(pages.url("/plain"), FetchPolicy(timeout_s=FAST))


async def test_allow_hosts_restricts_names(pages: PageServer) -> None:
    policy = FetchPolicy(allow_hosts=("example.com",), allow_addresses=(PAGE_HOST,), timeout_s=FAST)
    with pytest.raises(ToolError, match="not in the list of allowed hosts"):
        await fetch_text(pages.url("/plain"), policy)
    policy = FetchPolicy(allow_hosts=(PAGE_HOST,), allow_addresses=(PAGE_HOST,), timeout_s=FAST)
    assert "just text" in await fetch_text(pages.url("/plain"), policy)


# -- resolution and pinning -----------------------------------------------------------------------


async def test_any_bad_address_refuses_the_host(monkeypatch: pytest.MonkeyPatch, canary: Canary) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]

    monkeypatch.setattr(tools.netguard, "resolve_host", resolver)
    with pytest.raises(ToolError, match=r"resolves to a non-public address \(127\.0\.0\.1\)"):
        await fetch_text(f"http://mixed.example:{canary.port}/", FetchPolicy(timeout_s=FAST))
    assert await canary.settled_hits() == 0


async def test_connects_to_the_checked_address_with_original_host(
    monkeypatch: pytest.MonkeyPatch, pages: PageServer, canary: Canary
) -> None:
    """DNS rebinding: the name resolves to the allowed server once, then to the canary. We must
    connect to the checked address (and httpx must not resolve "pinned.test" itself)."""
    answers = [[PAGE_HOST], ["127.0.0.1"], ["127.0.0.1"]]
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[len(calls) - 1]

    monkeypatch.setattr(tools.netguard, "resolve_host", resolver)
    policy = FetchPolicy(allow_addresses=(PAGE_HOST,), timeout_s=FAST)
    out = await fetch_text(f"http://pinned.test:{pages.port}/echo-host", policy)
    assert out == f"Fetched http://pinned.test:{pages.port}/echo-host (text/plain)\n\nhost=pinned.test:{pages.port}"
    assert calls == ["pinned.test"]
    assert await canary.settled_hits() == 0


async def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(tools.netguard, "resolve_host", resolver)
    with pytest.raises(ToolError, match=r"^cannot resolve host 'nowhere\.invalid'$"):
        await fetch_text("http://nowhere.invalid/", FetchPolicy(timeout_s=FAST))


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:82b::200e"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert FetchPolicy().address_allowed(ipaddress.ip_address(address))


def test_allow_addresses_accepts_networks_and_rejects_typos() -> None:
    policy = FetchPolicy(allow_addresses=("10.0.0.0/8", "::1"))
    assert policy.address_allowed(ipaddress.ip_address("10.2.3.4"))
    assert policy.address_allowed(ipaddress.ip_address("::1"))
    assert not policy.address_allowed(ipaddress.ip_address("192.168.0.1"))
    assert not policy.address_allowed(ipaddress.ip_address("::ffff:10.2.3.4"))
    with pytest.raises(ValueError):
        FetchPolicy(allow_addresses=("not-an-ip",))


# -- real fetches ---------------------------------------------------------------------------------


@pytest.fixture
def allowed() -> FetchPolicy:
    return FetchPolicy(allow_addresses=(PAGE_HOST,), timeout_s=FAST)


async def test_html_page_is_converted_to_text(pages: PageServer, allowed: FetchPolicy) -> None:
    out = await fetch_text(pages.url("/page"), allowed)
    assert out == (
        f"Fetched {pages.url('/page')} (text/html)\n\n"
        "# Shopping list\n\nGroceries\n\nBuy milk and eggs.\n\n- one\n- two\n\n"
        f"Recipes ({pages.url('/recipes')}) js"
    )
    assert "alert" not in out and "color: red" not in out and "enable js" not in out
    assert "javascript:" not in out


@pytest.mark.parametrize(
    ("path", "body", "mime"),
    [
        ("/plain", "just text\n  kept as is", "text/plain"),
        ("/json", '{"milk":2}', "application/json"),
        ("/latin1", "café", "text/plain"),
        ("/untyped", "no content type", "unknown type"),
    ],
)
async def test_text_bodies_are_returned_as_is(
    pages: PageServer, allowed: FetchPolicy, path: str, body: str, mime: str
) -> None:
    assert await fetch_text(pages.url(path), allowed) == f"Fetched {pages.url(path)} ({mime})\n\n{body}"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/image", r"refusing binary content \(image/png\)"),
        ("/untyped-binary", "refusing binary content"),
        ("/missing", r"^HTTP 404 Not Found from http://127\.0\.0\.2:\d+/missing$"),
    ],
)
async def test_unusable_responses(pages: PageServer, allowed: FetchPolicy, path: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        await fetch_text(pages.url(path), allowed)


async def test_size_cap_stops_reading(pages: PageServer) -> None:
    policy = FetchPolicy(allow_addresses=(PAGE_HOST,), timeout_s=FAST, max_bytes=1000)
    out = await fetch_text(pages.url("/endless"), policy)
    body = out.split("\n\n", 1)[1]
    assert body == "a" * 1000 + "\n[truncated: the page is larger than 1000 bytes]"


@pytest.mark.parametrize("path", ["/slow-headers", "/slow-body"])
async def test_timeout_is_enforced(pages: PageServer, path: str) -> None:
    policy = FetchPolicy(allow_addresses=(PAGE_HOST,), timeout_s=0.3)
    with pytest.raises(ToolError, match=r"^timed out after 0\.3 s fetching http://127\.0\.0\.2"):
        await fetch_text(pages.url(path), policy)


async def test_fetch_url_tool_uses_the_context_policy(pages: PageServer, tmp_path: Path) -> None:
    ctx = ToolContext(Workspace(tmp_path / "ws"), "alice", "t-1", FetchPolicy(allow_addresses=(PAGE_HOST,)))
    assert "just text" in await fetch_url.run(ctx, {"url": pages.url("/plain")})
    default_ctx = ToolContext(Workspace(tmp_path / "ws"), "alice", "t-1")
    with pytest.raises(ToolError, match=BLOCKED):
        await fetch_url.run(default_ctx, {"url": pages.url("/plain")})
    assert fetch_url.source_label({"url": "https://x/y"}) == "fetch_url:https://x/y"


# -- html_to_text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>a</p><p>b</p>", "a\n\nb"),
        ("<script>var x = '<p>no</p>'</script>yes", "yes"),
        ("<style>p{}</style><template>t</template>ok", "ok"),
        ("x<br>y", "x\ny"),
        ('<a href="https://e.com/a">https://e.com/a</a>', "https://e.com/a"),
        ('<a href="rel">link</a>', "link (https://base.test/dir/rel)"),
        ('<a href="mailto:a@b">mail</a>', "mail"),
        ("<html><head><title>T</title><body><p>unclosed head", "# T\n\nunclosed head"),
        ("&lt;b&gt; &amp; &#x41;", "<b> & A"),
        ("<svg><text>drawing</text></svg>after", "after"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html, "https://base.test/dir/page") == text


def test_an_allowed_internationalised_name_allows_the_name_that_is_contacted() -> None:
    """The operator writes the name as people read it; URLs reach parse_url as IDNA (httpx): both must meet."""
    policy = FetchPolicy(allow_hosts=("Bücher.example.",))
    assert parse_url("https://bücher.example/x", policy).raw_host == b"xn--bcher-kva.example"
    assert parse_url("https://xn--bcher-kva.example/x", policy).raw_host == b"xn--bcher-kva.example"
    with pytest.raises(ToolError, match="not in the list of allowed hosts"):
        parse_url("https://bucher.example/x", policy)
