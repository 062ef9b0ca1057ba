"""Benchmark: N concurrent chat sessions against the REAL server (`tollgate serve`) over socket.io.

Three processes: the demo model (DemoBrain, first token 300 ms, unpaced; `--serve-model` of this file,
reached via ANTHROPIC_API_KEY + ANTHROPIC_BASE_URL); the chainlit server (fresh data dir per level, budgets
raised by env, see LIMITS); this one, with N browserless python-socketio clients, one chainlit session and
thread each, over 10 users. After a one-turn warm-up all N connect, then each sends 5 messages
"[t:<tag>] list my files" (read-only tool, no approval; the model strips the tag): 2 model calls per turn.
Turn wall = emit("client_message") → the usage footer (metadata "usage") here. Added = wall − the
model's own time for that turn (Σ finished − started of its streams, matched by tag). Server CPU from
/proc/<pid>/stat, loop-thread CPU and run-queue wait from its schedstat; RSS = VmRSS after warm-up vs the
peak (100 ms samples). Loop stalls: ui/loop_monitor.py in the server (TOLLGATE_LOOP_LAG_FILE, started by app.py);
BENCH_PROFILE=file adds a cProfile of the server's loop thread.
Run: .venv/bin/python bench/concurrency_server.py [N ...]   (default: 10 50 200)
BENCH_THINK_S=S: each session first waits a random think time (exponential, mean S, seeded) before every
message, as people reading an answer do; the default 0 is the saturation case (next message at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, machine, pct, table
from tests.e2e.conftest import Server, start_server, stop_server

MESSAGES, USERS, FIRST_TOKEN_S, PASSWORD = 5, 10, 0.3, "orchard-apple-8"
TURN_TIMEOUT_S = 300
THINK_S = float(os.environ.get("BENCH_THINK_S", "0"))
TAG = re.compile(r"^\[t:(\w+)\] ")
LIMITS = {"TOLLGATE_USER_DAILY_USD": "100000", "TOLLGATE_USER_MONTHLY_USD": "100000",
          "TOLLGATE_GLOBAL_DAILY_USD": "1000000", "TOLLGATE_MAX_USD_PER_THREAD": "100000"}
# BENCH_PROFILE=file: the server runs this entry instead of `tollgate serve`, to profile its loop thread.
PROFILED_ENTRY = """import cProfile, os, sys
sys.path.insert(0, {root!r})
from ui import web
PROFILE = cProfile.Profile()
PROFILE.enable()  # start-up included (ui/web.py's lifespan runs inside uvicorn)
try:
    web.main(sys.argv[1:])
finally:
    PROFILE.disable()
    PROFILE.dump_stats(os.environ["BENCH_PROFILE"])
"""


def _tag_of(request: dict[str, Any]) -> str:
    for m in reversed(request["messages"]):
        if m["role"] == "user":
            c = m["content"]
            for text in [c] if isinstance(c, str) else [b.get("text", "") for b in c if b.get("type") == "text"]:
                if found := TAG.match(text):
                    return found.group(1)
    return ""


def serve_model() -> None:
    """Subprocess: print the base URL; per stdin line print {tag: [requests, Σ finished − started]}."""
    from fakeclaude import DemoBrain, DemoModelServer, DemoSettings, Reply

    class TaggedDemoBrain:
        def __init__(self) -> None:
            self.inner = DemoBrain()

        def respond(self, request: dict[str, Any]) -> Reply:
            request = copy.deepcopy(request)
            for m in request["messages"]:
                if m["role"] == "user" and isinstance(m["content"], str):
                    m["content"] = TAG.sub("", m["content"])
                elif m["role"] == "user":
                    for b in m["content"]:
                        if b.get("type") == "text":
                            b["text"] = TAG.sub("", b["text"])
            return self.inner.respond(request)

    server = DemoModelServer(brain=TaggedDemoBrain(),
                             settings=DemoSettings(first_token_delay_s=FIRST_TOKEN_S, tokens_per_second=0.0))
    print(server.start(), flush=True)
    try:
        for _ in sys.stdin:
            own: dict[str, list[float]] = {}
            for st in list(server.stream_timings):
                if st.get("finished") is not None:
                    entry = own.setdefault(_tag_of(server.requests[st["request_index"]]), [0, 0.0])
                    entry[0] += 1
                    entry[1] += st["finished"] - st["started"]
            print(json.dumps(own), flush=True)
    finally:
        server.stop()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_thread(pid: int) -> tuple[float, float]:
    """The main thread's (the event loop's) CPU s and run-queue wait s: runnable, but the CPU went elsewhere."""
    run_ns, wait_ns, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def counters(pid: int, model_pid: int) -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    loop_cpu, loop_wait = loop_thread(pid)
    return {"cpu": cpu_s(pid), "model_cpu": cpu_s(model_pid), "client_cpu": ru.ru_utime + ru.ru_stime,
            "loop_cpu": loop_cpu, "loop_wait": loop_wait, "client_wait": loop_thread(os.getpid())[1]}


def stop_process(proc: subprocess.Popen[Any]) -> None:
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def launch(work: Path, model_url: str, lag_file: Path) -> Server:
    entry = None
    if os.environ.get("BENCH_PROFILE"):
        (work / "entry.py").write_text(PROFILED_ENTRY.format(root=str(ROOT)))
        entry = str(work / "entry.py")
    return start_server(work / "data", {**LIMITS, "ANTHROPIC_API_KEY": "demo-key", "ANTHROPIC_BASE_URL": model_url,
                                         "TOLLGATE_LOOP_LAG_FILE": str(lag_file)}, entry=entry)


async def add_users(data_dir: Path) -> list[str]:
    from store import users as user_store
    from store.db import Database

    db = Database.for_data_dir(data_dir)
    await db.create_schema()
    names = [f"u{i}" for i in range(USERS)]
    for name in names:
        await user_store.add_user(db, name=name, password=PASSWORD)
    await db.close()
    return names


async def login(url: str, user: str) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/login", data={"username": user, "password": PASSWORD})
        r.raise_for_status()
        return str(r.cookies["access_token"])


class Session:
    """One browserless chat: counts the usage lines the server sends (one per finished turn)."""

    def __init__(self, url: str, user: str, token: str) -> None:
        import socketio

        self.url, self.user, self.token, self.thread_id = url, user, token, str(uuid.uuid4())
        self.sio = socketio.AsyncClient(reconnection=False, request_timeout=120)
        self.usage_lines, self.changed = 0, asyncio.Event()
        self.sio.on("new_message", self._on_message)
        self.sio.on("update_message", self._on_message)  # the usage line is the answer's footer (an update)

    async def _on_message(self, data: Any) -> None:
        if isinstance(data, dict) and "usage" in (data.get("metadata") or {}):
            self.usage_lines += 1
            self.changed.set()

    async def connect(self) -> None:
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"],
                               headers={"Cookie": f"access_token={self.token}"},
                               auth={"sessionId": str(uuid.uuid4()), "clientType": "webapp", "threadId": ""},
                               wait_timeout=120)  # the default 1 s fails when 200 connect at once
        await self.sio.emit("connection_successful")

    async def turn(self, text: str) -> float:
        seen, t0 = self.usage_lines, time.perf_counter()
        await self.sio.emit("client_message", {"message": {
            "id": str(uuid.uuid4()), "threadId": self.thread_id, "name": self.user, "type": "user_message",
            "output": text, "createdAt": datetime.now(UTC).isoformat()}, "fileReferences": None})
        async with asyncio.timeout(TURN_TIMEOUT_S):
            while self.usage_lines == seen:
                self.changed.clear()
                await self.changed.wait()
        return time.perf_counter() - t0


class Model:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-model"], cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.url = self.stdout.readline().strip()

    def own_times(self) -> dict[str, list[float]]:
        self.stdin.write("dump\n")
        self.stdin.flush()
        return dict(json.loads(self.stdout.readline()))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()  # EOF: the model server stops
        stop_process(self.proc)


async def run_level(n: int, tmp: Path, model: Model) -> dict[str, Any]:
    work = tmp / f"n{n}"
    (work / "data").mkdir(parents=True)
    users = await add_users(work / "data")
    lag_file = work / "loop_lag.jsonl"
    server = launch(work, model.url, lag_file)
    proc, url = server.proc, server.url
    pid, sessions, stalls, peak = proc.pid, [], [], [0.0]
    stop = asyncio.Event()

    async def sample() -> None:  # client-side loop lag and server peak RSS, every 10 / 100 ms
        k = 0
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            stalls.append(time.perf_counter() - t - 0.01)
            k += 1
            if k % 10 == 0:
                peak[0] = max(peak[0], rss_mb(pid))

    async def play(i: int, s: Session) -> list[tuple[str, float]]:
        out, rng = [], random.Random(i)
        for k in range(MESSAGES):
            tag = f"n{n}s{i}m{k}"
            if THINK_S:
                await asyncio.sleep(rng.expovariate(1 / THINK_S))  # the simulated user reads, then types
            try:
                out.append((tag, await s.turn(f"[t:{tag}] list my files")))
            except TimeoutError:
                out.append((tag, float("nan")))
                break
        return out

    try:
        tokens = {u: await login(url, u) for u in users}
        warm = Session(url, users[0], tokens[users[0]])
        await warm.connect()
        await warm.turn(f"[t:w{n}] list my files")  # imports, connections, first-use caches
        await warm.sio.disconnect()
        rss0 = rss_mb(pid)
        sessions = [Session(url, users[i % USERS], tokens[users[i % USERS]]) for i in range(n)]
        sampler = asyncio.create_task(sample())
        t = time.perf_counter()
        await asyncio.gather(*(s.connect() for s in sessions))
        connect_s = time.perf_counter() - t
        c0, w0, t0 = counters(pid, model.proc.pid), time.time(), time.perf_counter()
        played = await asyncio.gather(*(play(i, s) for i, s in enumerate(sessions)))
        wall, w1 = time.perf_counter() - t0, time.time()
        used = {k: v - c0[k] for k, v in counters(pid, model.proc.pid).items()}
        stop.set()
        await sampler
        own = model.own_times()
        lags: list[dict[str, float]] = []
        for _ in range(50):  # the monitor writes a line a second: wait for the one covering the end
            lines = [json.loads(x) for x in lag_file.read_text().splitlines()] if lag_file.exists() else []
            lags = [x for x in lines if w0 <= x["t"] <= w1 + 1.5]
            if not lag_file.exists() or any(x["t"] >= w1 for x in lines):
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*(s.sio.disconnect() for s in sessions), return_exceptions=True)
        stop_server(server)
    turns = [(tag, w) for p in played for tag, w in p if w == w]
    added = [w - own.get(tag, [0, 0.0])[1] for tag, w in turns]
    return {"n": n, "turns": len(turns), "failed": n * MESSAGES - len(turns), "wall": wall, "connect_s": connect_s,
            "calls": sum(own.get(tag, [0, 0.0])[0] for tag, _ in turns) / max(len(turns), 1),
            "own": [own.get(tag, [0, 0.0])[1] for tag, _ in turns], "walls": [w for _, w in turns],
            "added": added, **used,
            "rss0": rss0, "peak": max(peak[0], rss0), "lags": lags, "client_stall": max(stalls, default=0.0)}


def report(results: list[dict[str, Any]]) -> None:
    print(f"Machine: {machine()}\n")
    print(f"{MESSAGES} messages per session, each = list_files tool call (2 model calls), think time "
          f"{f'exponential, mean {THINK_S:g} s' if THINK_S else '0 (next message at once)'}; demo model in its own "
          f"process, first token {FIRST_TOKEN_S * 1000:.0f} ms, unpaced; {USERS} users; real chainlit server "
          "over socket.io; loop stalls from ui/loop_monitor.py in the server.\n")
    rows = []
    for r in results:
        rows.append([r["n"], r["turns"], r["failed"], r["calls"], pct(r["own"], 50) * 1e3, pct(r["walls"], 50) * 1e3,
                     pct(r["added"], 50) * 1e3, pct(r["added"], 99) * 1e3, max(r["added"], default=0) * 1e3,
                     r["turns"] / r["wall"], r["connect_s"]])
    print(table(["sessions", "turns", "failed", "model calls/turn", "model own p50 ms", "turn wall p50 ms",
                 "added p50 ms", "added p99 ms", "added max ms", "turns/s", "connect all s"], rows))
    rows = []
    for r in results:
        lag = r["lags"]
        rows.append([r["n"], r["cpu"], r["cpu"] / max(r["turns"], 1) * 1e3, r["cpu"] / r["wall"] * 100,
                     *(r[k] / r["wall"] * 100 for k in ("loop_cpu", "loop_wait", "client_wait")),
                     r["rss0"], r["peak"], (r["peak"] - r["rss0"]) / r["n"],
                     max((x["p99_ms"] for x in lag), default=float("nan")),
                     max((x["max_ms"] for x in lag), default=float("nan")), sum(x["max_ms"] > 50 for x in lag),
                     len(lag), r["client_cpu"], r["model_cpu"], r["client_stall"] * 1e3])
    print()
    print(table(["sessions", "server CPU s", "server CPU ms/turn", "server CPU %", "loop thread CPU %",
                 "loop thread run-queue wait %", "client loop run-queue wait %", "RSS before MB", "RSS peak MB",
                 "MB/session", "loop stall worst p99 ms", "loop stall max ms", "seconds > 50 ms", "seconds",
                 "client CPU s", "model CPU s", "client stall max ms"], rows))
    print("\nTargets: added p99 ≤ 100 ms at 200 sessions; server loop stall max ≤ 50 ms.")
    for r in results:
        a99 = pct(r["added"], 99) * 1e3
        st = max((x["max_ms"] for x in r["lags"]), default=float("nan"))
        print(f"- N={r['n']}: added p99 {a99:.0f} ms ({'MET' if a99 <= 100 else 'MISSED'}), "
              f"stall max {st:.0f} ms ({'MET' if st <= 50 else 'MISSED'})")


async def main() -> None:
    levels = [int(x) for x in sys.argv[1:]] or [10, 50, 200]
    model, results = Model(), []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in levels:
                results.append(await run_level(n, Path(tmp), model))
                r = results[-1]
                print(f"  done N={n}: {r['turns']} turns in {r['wall']:.1f} s", file=sys.stderr)
    finally:
        model.close()
    report(results)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-model"]:
        serve_model()
    else:
        asyncio.run(main())
