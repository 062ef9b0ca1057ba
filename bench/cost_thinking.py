"""Cost of 20- and 50-turn tool-using episodes with Claude 5.x thinking on, at two effort levels.

    .venv/bin/python bench/cost_thinking.py

The episodes of bench/cost_curve.py (one read_file call per turn, then an answer), through the real loop
and the strict demo model, which bills thinking as output: adaptive thinking at `low` and `medium`
effort (summarized display), for (a) no caching, (b) the system prompt cached only, (d) Tollgate's
caching + compression. The demo thinks a fixed amount per call (thinking.py: 8 / 40 estimated tokens by
effort, plus 12 per progress update before each tool call), so thinking tokens are counted exactly from
the number of calls. Writes docs/cost-thinking.md.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from pathlib import Path

import anthropic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import Settings  # noqa: E402
from agent.pricing import PriceTable  # noqa: E402
from bench.cost_curve import STRATEGIES, BenchBrain, Result, file_text, run_episode  # noqa: E402
from fakeclaude import DemoModelServer, DemoSettings  # noqa: E402
from fakeclaude.thinking import PROGRESS_TOKENS, ThinkingPlan, reasoning_tokens  # noqa: E402
from store import users as user_store  # noqa: E402
from store.db import Database  # noqa: E402

TURNS = (20, 50)
EFFORTS = ("low", "medium")
KEYS = ("a", "b", "d")


async def _episode(strategy: str, turns: int, effort: str) -> tuple[Result, int]:
    prices = PriceTable.load()
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        settings = Settings(data_dir=Path(tmp), effort=effort, max_calls_per_thread=100_000,
                            max_tokens_per_thread=10**9, max_usd_per_thread=Decimal(10_000),
                            user_daily_usd=Decimal(10_000), user_monthly_usd=Decimal(100_000),
                            global_daily_usd=Decimal(100_000))
        db = Database.for_data_dir(settings.data_dir)
        await db.create_schema()
        await user_store.add_user(db, name="bench", password="bench-password")
        notes = settings.workspaces_dir / "bench" / "notes"
        notes.mkdir(parents=True)
        for i in range(1, turns + 1):
            (notes / f"file_{i:03d}.txt").write_text(file_text(i))
        server = DemoModelServer(brain=BenchBrain(), settings=DemoSettings(first_token_delay_s=0, tokens_per_second=0,
                                                                           max_delta_tokens=256))
        client = anthropic.AsyncAnthropic(api_key="bench", base_url=server.start(), max_retries=0)
        try:
            result = await run_episode(db, server, client, prices, settings, strategy, turns)
            chats = [r for r in server.requests if r.get("tools")]
        finally:
            await client.close()
            server.stop()
            await db.close()
    plan = ThinkingPlan("adaptive", "summarized", effort)
    thinking = len(chats) * reasoning_tokens(plan) + turns * PROGRESS_TOKENS  # one tool call per turn
    return result, thinking


def run(job: tuple[str, int, str]) -> tuple[tuple[str, int, str], Result, int]:
    result, thinking = asyncio.run(_episode(*job))
    print(f"({job[0]}) {job[1]} turns, effort {job[2]}: ${result.usd:.4f}", flush=True)
    return job, result, thinking


def main() -> int:
    jobs = [(k, t, e) for t in TURNS for e in EFFORTS for k in KEYS]
    with ProcessPoolExecutor(max_workers=2) as pool:
        done = {job: (result, thinking) for job, result, thinking in pool.map(run, jobs)}
    output_price = Decimal(10)  # Sonnet 5.5, USD per million output tokens (agent/prices.toml)
    lines = ["# Cost with thinking on (bench/cost_thinking.py)", "",
             "Sonnet 5.5 prices; demo model; adaptive thinking, summarized display. Thinking is billed as output.",
             "", "| turns | effort | strategy | cost | × naive | × system-only | thinking tokens | thinking cost "
             "| cache-read share | compressions |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in TURNS:
        for e in EFFORTS:
            naive, system = done["a", t, e][0].usd, done["b", t, e][0].usd
            for k in KEYS:
                r, thinking = done[k, t, e]
                lines.append(f"| {t} | {e} | ({k}) {STRATEGIES[k][0]} | ${r.usd:.4f} | {r.usd / naive:.3f} "
                             f"| {r.usd / system:.3f} | {thinking:,} | ${thinking * output_price / 1_000_000:.4f} "
                             f"| {r.read_share:.3f} | {r.compressions} |")
    text = "\n".join(lines) + "\n"
    (ROOT / "docs" / "cost-thinking.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
