"""What sizing reservations with count_tokens adds to a turn (the count runs before each turn's first chat call).

    .venv/bin/python bench/count_latency.py

Through the real loop and SDK against the demo model on loopback (no pacing): (1) the latency of the
count_tokens call itself, as the loop records it, for threads of 1, 10 and 40 turns; (2) the wall time of a
whole one-call turn with counting on and off. Loopback hides the network: against the real API each count
adds one more round trip (the docs: a separately rate-limited, free endpoint). Prints a markdown section for
docs/cost-thinking.md.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import NullSink, machine, make_bench, pct, table  # noqa: E402
from fakeclaude import DemoSettings, Reply, TextBlock  # noqa: E402
from store import threads as thread_store  # noqa: E402

FAST = DemoSettings(first_token_delay_s=0.0, tokens_per_second=0.0)
ANSWER = "The notes say the review moved to Friday and Ana owns the checklist. " * 4
BUCKETS = ((1, 10), (11, 20), (31, 40))  # turns of the thread whose counts are reported


class EchoBrain:
    def respond(self, body: dict[str, object]) -> Reply:
        return Reply((TextBlock(ANSWER),))


async def _run(count: bool) -> tuple[dict[int, list[float]], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        bench = await make_bench(Path(tmp), brain=EchoBrain(), demo_settings=FAST, count_tokens_enabled=count,
                                 compress_enabled=False)
        counts: dict[int, list[float]] = {}
        turns: list[float] = []
        try:
            tid = (await thread_store.create_thread(bench.db, owner="alice")).id
            for turn in range(1, BUCKETS[-1][1] + 1):
                before = len(bench.agent.context.sizer.count_latencies_ms)
                started = time.perf_counter()
                await bench.agent.run_turn(owner="alice", thread_id=tid, text=f"Question {turn}: what changed?",
                                           emit=NullSink())
                turns.append((time.perf_counter() - started) * 1000)
                for first, last in BUCKETS:
                    if first <= turn <= last:
                        counts.setdefault(first, []).extend(list(bench.agent.context.sizer.count_latencies_ms)[before:])
        finally:
            await bench.close()
        return counts, turns


async def main() -> None:
    counts_on, turns_on = await _run(True)
    _, turns_off = await _run(False)
    rows = [(f"turns {first}-{last}", len(counts_on[first]), pct(counts_on[first], 50), pct(counts_on[first], 95))
            for first, last in BUCKETS]
    print("## What count_tokens adds to a turn (bench/count_latency.py)\n")
    print(f"Machine: {machine()}. Demo model on loopback, no pacing.\n")
    print(table(["turn of the thread", "counts", "count p50 ms", "count p95 ms"], rows))
    print()
    print(table(["one-call turn", "turns", "p50 ms", "p95 ms"],
                [("count_tokens on", len(turns_on), pct(turns_on, 50), pct(turns_on, 95)),
                 ("count_tokens off (byte estimate)", len(turns_off), pct(turns_off, 50), pct(turns_off, 95))]))


if __name__ == "__main__":
    asyncio.run(main())
