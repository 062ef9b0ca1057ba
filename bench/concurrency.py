"""Benchmark 5: N concurrent in-process sessions of the real Agent, 5 messages each, every message a
read-only tool call (list_files) + a final answer, against the demo model server with a fixed 300 ms
first-token delay (unpaced after that).

Per turn: added time = turn wall time − the model server's own time for that turn's requests
(Σ finished − started from server.stream_timings). Also throughput, process CPU time (includes the
in-process demo server thread), and event-loop stall = max lateness of a ticker doing asyncio.sleep(0.01).
Targets: p99 added ≤ 100 ms at 200 sessions, stalls ≤ 50 ms.
Run: .venv/bin/python bench/concurrency.py [N ...]   (default: 10 50 200)
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import NullSink, machine, make_bench, pct, table
from fakeclaude import DemoSettings, Reply, TextBlock, ToolUseBlock
from store import threads as thread_store

MESSAGES = 5
USERS = 10
FIRST_TOKEN_S = 0.3


def _tag(request: dict[str, Any]) -> str:
    for m in reversed(request["messages"]):
        if m["role"] == "user" and isinstance(m["content"], list):
            for b in m["content"]:
                if b.get("type") == "text":
                    return b["text"]
        elif m["role"] == "user" and isinstance(m["content"], str):
            return m["content"]
    return ""


class ToolThenAnswer:
    """Every user message: one list_files call, then a short answer after its result."""

    def respond(self, request: dict[str, Any]) -> Reply:
        last = request["messages"][-1]
        if isinstance(last["content"], list) and any(b.get("type") == "tool_result" for b in last["content"]):
            return Reply(blocks=(TextBlock("Here is what I found: nothing much."),))
        return Reply(blocks=(TextBlock("Let me look."), ToolUseBlock("list_files", {"path": "."})),
                     stop_reason="tool_use")


async def run_level(n: int, base: Path) -> dict[str, Any]:
    users = [f"user{i}" for i in range(min(USERS, n))]
    b = await make_bench(base / f"n{n}", brain=ToolThenAnswer(), users=users,
                         demo_settings=DemoSettings(first_token_delay_s=FIRST_TOKEN_S, tokens_per_second=0.0),
                         user_daily_usd=100000, user_monthly_usd=100000, global_daily_usd=1000000,
                         max_usd_per_thread=100000)
    turns: list[tuple[str, float]] = []
    stalls: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            stalls.append(time.perf_counter() - t0 - 0.01)

    async def session(i: int) -> None:
        owner = users[i % len(users)]
        tid = (await thread_store.create_thread(b.db, owner=owner)).id
        for k in range(MESSAGES):
            text = f"s{i} m{k}: list my files"
            t0 = time.perf_counter()
            fin = await b.agent.run_turn(owner=owner, thread_id=tid, text=text, emit=NullSink())
            turns.append((text, time.perf_counter() - t0))
            assert fin.stop_reason == "end_turn", fin

    try:
        await session(10_000 + 0)  # warm-up: imports, connections
        b.server.stream_timings.clear() if hasattr(b.server.stream_timings, "clear") else None
        warm_requests = len(b.server.requests)
        turns.clear()
        tick = asyncio.create_task(ticker())
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await asyncio.gather(*(session(i) for i in range(n)))
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        stop.set()
        await tick
        model_time: dict[str, float] = {}
        for st in list(b.server.stream_timings):
            idx = st["request_index"]
            if idx < warm_requests or st.get("finished") is None:
                continue
            tag = _tag(b.server.requests[idx])
            model_time[tag] = model_time.get(tag, 0.0) + (st["finished"] - st["started"])
        added = [w - model_time.get(tag, 0.0) for tag, w in turns]
        own = [model_time.get(tag, 0.0) for tag, _ in turns]
    finally:
        await b.close()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {"n": n, "turns": len(turns), "wall": wall, "added": added, "own": own,
            "walls": [w for _, w in turns], "cpu": cpu, "stall": max(stalls) if stalls else 0.0,
            "stall_p99": pct(stalls, 99)}


async def main() -> None:
    levels = [int(x) for x in sys.argv[1:]] or [10, 50, 200]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in levels:
            results.append(await run_level(n, Path(tmp)))
            r = results[-1]
            print(f"  done N={n}: wall {r['wall']:.1f} s", file=sys.stderr)
    print(f"Machine: {machine()}\n")
    print(f"{MESSAGES} messages per session, each = model call (tool_use list_files) + tool + model call (answer); "
          f"demo model first-token delay {FIRST_TOKEN_S * 1000:.0f} ms, unpaced; {USERS} users; in-process, no UI.\n")
    rows = []
    for r in results:
        rows.append([r["n"], r["turns"], pct(r["own"], 50) * 1e3, pct(r["walls"], 50) * 1e3,
                     pct(r["added"], 50) * 1e3, pct(r["added"], 99) * 1e3, r["turns"] / r["wall"],
                     r["cpu"], r["cpu"] / r["turns"] * 1e3, r["stall_p99"] * 1e3, r["stall"] * 1e3])
    print(table(["sessions", "turns", "model own p50 ms", "turn wall p50 ms", "added p50 ms", "added p99 ms",
                 "turns/s", "CPU s", "CPU ms/turn", "loop stall p99 ms", "loop stall max ms"], rows))
    print("\nTargets: added p99 ≤ 100 ms at 200 sessions; loop stall max ≤ 50 ms.")
    for r in results:
        a99, st = pct(r["added"], 99) * 1e3, r["stall"] * 1e3
        print(f"- N={r['n']}: added p99 {a99:.0f} ms ({'MET' if a99 <= 100 else 'MISSED'}), "
              f"stall max {st:.0f} ms ({'MET' if st <= 50 else 'MISSED'})")


if __name__ == "__main__":
    asyncio.run(main())
