"""Benchmark 1: 4 independent read-only tool calls of 200 ms in one model response vs a single call.

Both turns go through the real Agent loop (store, budget, SDK over HTTP to the demo model server,
unpaced). Target: 4-call turn ≤ 1.2× the 1-call turn (sequential execution would be ~4× the tool time).
Run: .venv/bin/python bench/parallel_tools.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import NullSink, machine, make_bench, median, table
from fakeclaude import DemoSettings, Reply, ScriptedBrain, TextBlock, ToolUseBlock
from tools import ToolContext, ToolRegistry, default_registry, tool

TOOL_S = 0.2
REPS = 5


@tool()
async def slow_lookup(ctx: ToolContext, key: str) -> str:
    """Look up a key (benchmark tool: sleeps 200 ms)."""
    await asyncio.sleep(TOOL_S)
    return f"value of {key}"


def steps(n_calls: int, reps: int) -> list[Reply]:
    out: list[Reply] = []
    for r in range(reps):
        out.append(Reply(blocks=(TextBlock("Looking up."),
                                 *(ToolUseBlock("slow_lookup", {"key": f"k{r}-{i}"}) for i in range(n_calls))),
                         stop_reason="tool_use"))
        out.append(Reply(blocks=(TextBlock("Done."),)))
    return out


async def run(n_calls: int, base: Path) -> list[float]:
    registry = ToolRegistry([*default_registry(), slow_lookup])
    brain = ScriptedBrain(steps(n_calls, REPS + 1))
    b = await make_bench(base / f"n{n_calls}", brain=brain, registry=registry,
                         demo_settings=DemoSettings(first_token_delay_s=0.0, tokens_per_second=0.0))
    from store import threads as thread_store
    times: list[float] = []
    try:
        for r in range(REPS + 1):  # first turn is a warm-up (imports, connections)
            tid = (await thread_store.create_thread(b.db, owner="alice")).id
            t0 = time.perf_counter()
            fin = await b.agent.run_turn(owner="alice", thread_id=tid, text="look these up", emit=NullSink())
            dt = time.perf_counter() - t0
            assert fin.stop_reason == "end_turn", fin
            if r:
                times.append(dt)
        brain.assert_done()
    finally:
        await b.close()
    return times


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one = await run(1, Path(tmp))
        four = await run(4, Path(tmp))
    m1, m4 = median(one), median(four)
    ratio = m4 / m1
    print(f"Machine: {machine()}\n")
    print(f"Turn wall time, median of {REPS} turns (after 1 warm-up), tool = asyncio.sleep({TOOL_S}), "
          "demo model unpaced, 2 model calls per turn\n")
    print(table(["variant", "median ms", "min ms", "max ms"],
                [["1 read-only call", m1 * 1000, min(one) * 1000, max(one) * 1000],
                 ["4 read-only calls", m4 * 1000, min(four) * 1000, max(four) * 1000]]))
    seq = (m1 + 3 * TOOL_S) / m1
    print(f"\nratio 4-call / 1-call = **{ratio:.2f}×** (target ≤ 1.20×; sequential would be ≈ {seq:.2f}× here) "
          f"→ {'MET' if ratio <= 1.2 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
