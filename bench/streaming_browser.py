"""Streaming overhead in a real browser (issue #8, item 1): Tollgate's 50 ms batching vs one socket event per delta.

`.venv/bin/python bench/streaming_browser.py [N ...]` (default 1 10 50 concurrent sessions).
The demo model runs in THIS process (the app reaches it through ANTHROPIC_BASE_URL), streaming a `[long:2000]`
answer at a fixed rate; its send times (perf_counter) are mapped to epoch with a (time.time(), perf_counter())
pair per round. Each page runs a MutationObserver (installed before sending) that stamps
`performance.timeOrigin + performance.now()` when the streamed message first has text and at every change of its
text; the last change is "full text rendered". The turn is over when the usage line is in the page. Both clocks are
the machine's wall clock; each round checks the browser clock lies inside a CDP round-trip bracket of time.time().
first→visible = first text in page − model's first delta; lag = last text change − model's last delta;
ratio = (last text change − model first delta) / (model last delta − model first delta).
Two app servers run side by side: default batching, and TOLLGATE_STREAM_INTERVAL_MS=0 (per delta).
--pages K: only min(N, K) sessions are browser pages (measured); the other N - K are browserless python-socketio
sessions in a child process that send the same message at the same moment, so N loads the server without putting
N Chromium renderers on the same 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import contextlib
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.async_api import Browser, async_playwright
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from bench._common import machine, median, pct, table
from fakeclaude import DemoModelServer, DemoSettings
from fakeclaude.persona.demo_brain import filler_text
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, ROOT, Server, start_server, stop_server

ARGS = [*CHROMIUM_ARGS, "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows"]
VARIANTS = {"batched (50 ms)": {}, "per-delta": {"TOLLGATE_STREAM_INTERVAL_MS": "0"}}
FIRST_TOKEN_S = 0.3
CAP = 4  # a round waits at most CAP x the stream duration + 60 s after sending
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "5"))  # sessions per (variant, N) at least: N=1 runs 5 rounds

# Counts socket.io stream_token frames this page receives (installed before the app's scripts run).
# In-page socket.io frame counter and stamps of the first and last stream frame (stream_start / stream_token)
# received: they split each latency into "server + socket" and "browser" parts. Installed before the app's scripts.
WS_HOOK = """(() => { const W = window.WebSocket; window.__ws = {tokens: 0, first: null, last: null};
  window.WebSocket = class extends W { constructor(...a) { super(...a); this.addEventListener('message', e => {
    if (typeof e.data !== 'string' || !e.data.startsWith('42["stream_')) return;
    const now = performance.timeOrigin + performance.now(), ws = window.__ws;
    if (e.data.startsWith('42["stream_token"')) ws.tokens++;
    if (ws.first === null) ws.first = now;
    ws.last = now;
  }); } }; })()"""
OBSERVER = """() => { const t = window.__t = {first: null, last: null, done: null, len: 0, changes: 0};
  Object.assign(window.__ws, {tokens: 0, first: null, last: null});
  const sel = "[data-step-type='assistant_message']";
  new MutationObserver(() => {
    const now = performance.timeOrigin + performance.now();
    const msgs = document.querySelectorAll(sel);
    if (msgs.length) {
      const len = msgs[0].textContent.trim().length;
      if (t.first === null && len > 0) t.first = now;
      if (len !== t.len) { t.len = len; t.last = now; t.changes++; }
    }
    // the usage line ('… this answer $…') is the answer's footer now (it was a message of its own)
    if (t.done === null && [...msgs].some(m => m.textContent.includes('this answer $'))) t.done = now;
  }).observe(document.body, {subtree: true, childList: true, characterData: true}); }"""
FINAL = """() => ({...window.__t, tokens: window.__ws.tokens, ws_first: window.__ws.first, ws_last: window.__ws.last,
  text: (document.querySelector("[data-step-type='assistant_message']") || {textContent: ''}).textContent})"""
NO_DATA = {"first": None, "last": None, "done": None, "len": 0, "changes": 0, "tokens": 0, "text": ""}


async def finish(page: Any, timeout_ms: float) -> None:
    """Wait for the usage line (the turn is over); a page still rendering at the cap is reported as unfinished."""
    with contextlib.suppress(PlaywrightTimeoutError, TimeoutError):  # the page's own timer fires late when busy
        await asyncio.wait_for(page.wait_for_function("window.__t.done !== null", polling=500, timeout=timeout_ms),
                               timeout_ms / 1000)


async def final(page: Any) -> dict[str, Any]:
    try:  # a renderer with a long backlog may not answer quickly
        return await asyncio.wait_for(page.evaluate(FINAL), 60)
    except (TimeoutError, PlaywrightError):
        return NO_DATA


def add_user(server: Server) -> None:
    """`tollgate users add` from this checkout (the console script would import the editable install's)."""
    done = subprocess.run([sys.executable, "-c", "import sys; from cli import main; sys.exit(main())", "users", "add",
                           "bench", "--password-stdin"], input=(PASSWORD + "\n").encode(), env=server.env, cwd=ROOT,
                          capture_output=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"users add failed: {done.stderr.decode()[-2000:]}")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clock_pair() -> tuple[float, float]:
    """(time.time(), perf_counter()) taken as close together as we can: the tightest of 20 tries."""
    best = (math.inf, 0.0, 0.0)
    for _ in range(20):
        a = time.perf_counter()
        w = time.time()
        b = time.perf_counter()
        best = min(best, (b - a, w, (a + b) / 2))
    return best[1], best[2]


async def login_state(browser: Browser, url: str) -> Any:
    ctx = await browser.new_context(base_url=url)
    page = await ctx.new_page()
    await page.goto("/login")
    await page.locator("#email").fill("bench")
    await page.locator("#password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign In").click()
    await page.locator("#chat-input").wait_for(state="visible", timeout=60_000)
    state = await ctx.storage_state()
    await ctx.close()
    return state


async def run_round(browser: Browser, server: Server, state: Any, demo: DemoModelServer, n: int, tag: str,
                    expected: str, stream_s: float, max_pages: int) -> dict[str, Any]:
    k = min(n, max_pages)  # sessions in the browser, measured; the other n - k are browserless load (child process)
    load = None
    # The measuring hooks are the benchmark's, not the page's: the app's CSP (no eval) would refuse
    # Playwright's wait_for_function, so this context bypasses it (the app's own scripts run as served).
    ctx = await browser.new_context(base_url=server.url, storage_state=state, bypass_csp=True)
    await ctx.add_init_script(WS_HOOK)
    opening = asyncio.Semaphore(4)  # 2 cores: don't load 50 SPAs at once

    async def open_page() -> Any:
        async with opening:
            page = await ctx.new_page()
            page.set_default_timeout(180_000)
            await page.goto("/")
            await page.locator("#chat-input").wait_for(state="visible")
            await page.evaluate(OBSERVER)
            return page

    try:
        if n > k:
            load = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--load", server.url, str(n - k), tag, str(len(expected) // 4), cwd=ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            assert load.stdin is not None and load.stdout is not None
            if (await load.stdout.readline()).strip() != b"ready":
                raise RuntimeError("the load clients did not start")
        pages = await asyncio.gather(*(open_page() for _ in range(k)))
        wall0, perf0 = clock_pair()
        skew = []  # browser clock minus the nearest end of the [before, after] time.time() bracket (0 = inside)
        for p in pages:
            before = time.time()
            b = await p.evaluate("performance.timeOrigin + performance.now()") / 1000
            after = time.time()
            skew.append(0.0 if before <= b <= after else min(b - before, b - after, key=abs))
        cpu0 = cpu_s(server.proc.pid)

        async def send(i: int, p: Any) -> None:
            await p.locator("#chat-input").fill(f"[long:{len(expected) // 4}] {tag}-p{i}")
            await p.locator("#chat-submit").click()

        if load is not None:
            load.stdin.write(b"go\n")
            await load.stdin.drain()
        await asyncio.gather(*(send(i, p) for i, p in enumerate(pages)))
        await asyncio.gather(*(finish(p, (stream_s * CAP + 60) * 1000) for p in pages))
        capped_at = time.time()  # for pages still rendering: their ratio is at least (capped_at - first) / stream
        cpu = cpu_s(server.proc.pid) - cpu0
        finals = [await final(p) for p in pages]
    finally:
        await ctx.close()
        if load is not None and load.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load.wait(), 30)
            if load.returncode is None:
                load.kill()
                await load.wait()
    timings = {}
    for t in list(demo.stream_timings):
        body = json.dumps(demo.requests[t["request_index"]]["messages"][-1])
        for i in range(k):
            if f"{tag}-p{i}\\" in body or f"{tag}-p{i}\"" in body:
                timings[i] = t
    to_epoch = lambda perf: wall0 + (perf - perf0)  # noqa: E731
    rows = []
    want = " ".join(expected.split())
    failed = [i for i in range(k) if i not in timings or timings[i]["last_delta"] is None]
    if failed:  # the turn never reached the model (or its stream broke): show why, count it, go on
        print(f"  {len(failed)} sessions got no model stream; server log tail:\n{server.log.read_text()[-1500:]}",
              file=sys.stderr)
    for i, f in enumerate(finals):
        if i in failed:
            continue
        t = timings[i]
        m_first, m_last = to_epoch(t["first_text_delta"]), to_epoch(t["last_delta"])
        ms = lambda browser_ms, model: browser_ms - model * 1000  # noqa: E731
        row = {"stream_s": m_last - m_first, "frames": f["tokens"], "changes": f["changes"],
               "shown": f["len"] / len(want), "done": f["done"] is not None, "ok": " ".join(f["text"].split()) == want}
        if f["first"] is not None and f["ws_first"] is not None:
            row.update(first_ms=ms(f["first"], m_first), ws_first_ms=ms(f["ws_first"], m_first))
        if row["done"] and f["last"] is not None and f["ws_last"] is not None:
            row.update(lag_ms=ms(f["last"], m_last), ws_lag_ms=ms(f["ws_last"], m_last),
                       ratio=(f["last"] / 1000 - m_first) / (m_last - m_first))
        else:
            row["done"] = False
            row["ratio"] = (capped_at - m_first) / (m_last - m_first)
        rows.append(row)
    return {"rows": rows, "skew_ms": max(abs(s) for s in skew) * 1000, "cpu_s": cpu, "failed": len(failed)}


async def run_all(servers: dict[str, Server], demo: DemoModelServer, levels: list[int], expected: str,
                  stream_s: float, max_pages: int, args: argparse.Namespace) -> dict[tuple[str, int], dict[str, Any]]:
    out: dict[tuple[str, int], dict[str, Any]] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            states = {v: await login_state(browser, s.url) for v, s in servers.items()}
            for n in levels:
                for r in range(math.ceil(SAMPLES / min(n, max_pages))):
                    for v, server in servers.items():  # interleaved, so both variants see similar machine load
                        t0 = time.monotonic()
                        res = await run_round(browser, server, states[v], demo, n, f"{v[:3]}-n{n}-r{r}", expected,
                                              stream_s, max_pages)
                        acc = out.setdefault((v, n), {"rows": [], "skew_ms": 0.0, "cpu_s": 0.0, "rounds": 0,
                                                      "failed": 0})
                        acc["failed"] += res["failed"]
                        acc["rows"] += res["rows"]
                        acc["skew_ms"] = max(acc["skew_ms"], res["skew_ms"])
                        acc["cpu_s"] += res["cpu_s"]
                        acc["rounds"] += 1
                        print(f"  {v} N={n} round {r}: {time.monotonic() - t0:.0f} s, server CPU {res['cpu_s']:.1f} s",
                              file=sys.stderr, flush=True)
                if n != levels[-1]:  # figures so far, in case a heavier level fails
                    print(f"(partial, after N={n})", file=sys.stderr)
                    report(out, args, file=sys.stderr)
        finally:
            await browser.close()
    return out


def p5095(rows: list[dict[str, Any]], key: str) -> str:
    xs = [r[key] for r in rows if key in r]
    return f"{pct(xs, 50):.0f} / {pct(xs, 95):.0f}" if xs else "-"


def report(out: dict[tuple[str, int], dict[str, Any]], args: argparse.Namespace, file: Any = None) -> None:
    print = functools.partial(builtins.print, file=file or sys.stdout, flush=True)
    print(f"Command: .venv/bin/python bench/streaming_browser.py {' '.join(sys.argv[1:])}".rstrip())
    headers = ["variant", "N", "sessions (full text ok)", "first delta→visible p50 / p95 (ms)",
               "last delta→full render p50 / p95 (ms)", "render/stream ratio p50 / max", "stream_token frames/session",
               "DOM text updates/session", "server CPU s/round"]
    rows, split, verdicts = [], [], []
    for (v, n), acc in out.items():
        rs = acc["rows"]
        for r in rs:
            if "ws_first_ms" in r:
                r["dom_first_ms"] = r["first_ms"] - r["ws_first_ms"]
            if "ws_lag_ms" in r:
                r["dom_lag_ms"] = r["lag_ms"] - r["ws_lag_ms"]
        split.append([v, n, *(p5095(rs, k) for k in ("ws_first_ms", "dom_first_ms", "ws_lag_ms", "dom_lag_ms"))])
        first, ratio = [r["first_ms"] for r in rs if "first_ms" in r], [r["ratio"] for r in rs] or [math.nan]
        late = [r for r in rs if not r["done"]]  # still rendering at the cap: their ratio is a lower bound
        sessions = f"{len(rs)} ({sum(r['ok'] for r in rs)})" + (f", {acc['failed']} failed" if acc["failed"] else "")
        if late:
            sessions += (f", {len(late)} unfinished at the cap with {median([r['shown'] for r in late]):.0%} of the "
                         "text shown (median)")
        top = f"{'> ' if late else ''}{max(ratio):.3f}"
        rows.append([v, n, sessions, p5095(rs, "first_ms"), p5095(rs, "lag_ms"), f"{pct(ratio, 50):.3f} / {top}",
                     f"{median([r['frames'] for r in rs] or [math.nan]):.0f}",
                     f"{median([r['changes'] for r in rs] or [math.nan]):.0f}",
                     f"{acc['cpu_s'] / acc['rounds']:.1f}"])
        met = max(ratio) <= 1.1 and not late and not acc["failed"]
        verdicts.append(f"- {v}, N={n}: first→visible p95 {pct(first, 95):.0f} ms "
                        f"({'MET' if pct(first, 95) <= 50 else 'MISSED'} ≤ 50); ratio max {top} "
                        f"({'MET' if met else 'MISSED'} ≤ 1.1)")
        lows = [r[k] for r in rs for k in ("first_ms", "lag_ms", "ws_first_ms", "ws_lag_ms") if k in r]
        if lows and min(lows) < 0:
            verdicts.append(f"  - WARNING: a negative latency ({min(lows):.1f} ms): the clocks disagree")
    stream = median([r["stream_s"] for acc in out.values() for r in acc["rows"]])
    skew = max(acc["skew_ms"] for acc in out.values())
    print(f"Demo model: {args.tokens} tokens at {args.rate:g} tokens/s in deltas of {args.delta_tokens} token(s) "
          f"(first delta after {FIRST_TOKEN_S * 1000:.0f} ms; model stream duration median {stream:.2f} s).")
    print(f"Clock check: browser timeOrigin+now() vs python time.time(): max distance outside the CDP round-trip "
          f"bracket {skew:.2f} ms (0 = always inside).")
    if args.pages < max(args.levels):
        print(f"Browser pages (measured) per round: min(N, {args.pages}); the other sessions are browserless "
              "python-socketio clients in a child process, sending at the same moment.")
    print(machine())
    print()
    print(table(headers, rows))
    print()
    print("Where the time goes (p50 / p95, ms): model delta → the stream frame dispatched to page JS (in-page "
          "WebSocket hook; server, socket and any renderer main-thread backlog) → the DOM text change.")
    print()
    print(table(["variant", "N", "first delta→frame in JS", "frame→first text in DOM", "last delta→last frame in JS",
                 "last frame→last DOM change"], split))
    print()
    print("Targets (first delta→visible p95 ≤ 50 ms; render/stream ratio ≤ 1.1, judged on the worst session):")
    print("\n".join(verdicts))


async def load_clients(url: str, count: str, tag: str, tokens: str) -> None:
    """Child process (--load): browserless chat sessions that send with the pages and receive every event."""
    import httpx
    import socketio

    async with httpx.AsyncClient(base_url=url) as http:
        token = (await http.post("/login", data={"username": "bench", "password": PASSWORD})).cookies["access_token"]
    clients, done = [], []
    for _ in range(int(count)):
        sio, ended = socketio.AsyncClient(reconnection=False), asyncio.Event()
        sio.on("new_message", lambda data, e=ended: e.set() if "this answer $" in str(data.get("output")) else None)
        await sio.connect(url, socketio_path="/ws/socket.io", transports=["websocket"],
                          headers={"Cookie": f"access_token={token}"},
                          auth={"sessionId": str(uuid.uuid4()), "clientType": "webapp", "threadId": ""})
        await sio.emit("connection_successful")
        clients.append(sio)
        done.append(ended)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    now = datetime.now(UTC).isoformat()
    await asyncio.gather(*(sio.emit("client_message", {"message": {
        "id": str(uuid.uuid4()), "threadId": str(uuid.uuid4()), "name": "bench", "type": "user_message",
        "output": f"[long:{tokens}] {tag}-L{i}", "createdAt": now}, "fileReferences": None})
        for i, sio in enumerate(clients)))
    await asyncio.gather(*(e.wait() for e in done))
    for sio in clients:
        await sio.disconnect()


def main() -> None:
    if sys.argv[1:2] == ["--load"]:
        asyncio.run(load_clients(*sys.argv[2:6]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("levels", nargs="*", type=int, default=[1, 10, 50])
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=100.0, help="model tokens per second")
    ap.add_argument("--pages", type=int, default=10**6, help="at most this many sessions in the browser (measured); "
                    "the others are browserless socket.io sessions in a child process, loading the server only")
    ap.add_argument("--delta-tokens", type=int, default=1, help="estimated tokens (4 chars) per text delta")
    args = ap.parse_args()
    expected = filler_text(args.tokens)
    demo = DemoModelServer(settings=DemoSettings(first_token_delay_s=FIRST_TOKEN_S, tokens_per_second=args.rate,
                                                 max_delta_tokens=args.delta_tokens))
    base_url = demo.start()
    common = {"ANTHROPIC_API_KEY": "demo-key", "ANTHROPIC_BASE_URL": base_url,
              "TOLLGATE_MAX_TOKENS": str(max(4096, args.tokens * 2)), "TOLLGATE_USER_DAILY_USD": "100000",
              "TOLLGATE_USER_MONTHLY_USD": "100000", "TOLLGATE_GLOBAL_DAILY_USD": "100000",
              "TOLLGATE_MAX_USD_PER_THREAD": "100000"}
    servers: dict[str, Server] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, (v, extra) in enumerate(VARIANTS.items()):
                servers[v] = start_server(Path(tmp) / f"data{i}", {**common, **extra})
                add_user(servers[v])
            out = asyncio.run(run_all(servers, demo, args.levels, expected, args.tokens / args.rate, args.pages,
                                     args))
            for s in servers.values():
                stop_server(s)
            servers.clear()
    finally:
        for s in servers.values():
            stop_server(s)
        demo.stop()
    report(out, args)


if __name__ == "__main__":
    main()
