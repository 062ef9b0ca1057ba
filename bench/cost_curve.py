"""Cost of a tool-using conversation under four caching strategies, through the REAL agent loop.

    .venv/bin/python bench/cost_curve.py

Each episode is N turns of: the user asks to read a file, the model calls read_file (a read-only
tool, ≈400-token result), then answers (≈150 output tokens per turn in all). It runs through
agent.loop.Agent, the real anthropic SDK over HTTP and the demo model server, whose PromptCache
applies the documented caching rules. Strategies differ only in Settings (the code under test):
  (a) cache_strategy="none",        compression off   - no caching, full history
  (b) cache_strategy="system",      compression off   - system prompt cached only
  (c) cache_strategy="incremental", compression off   - Tollgate's caching
  (d) cache_strategy="incremental", compression on    - Tollgate's caching + compression
Costs are priced by agent.pricing.PriceTable from the usage the server reported (model_calls rows),
summary calls at the summary model's price. Writes docs/cost-curve.md and docs/cost-curve.png.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.budget import Budget  # noqa: E402
from agent.config import Settings  # noqa: E402
from agent.events import AgentEvent  # noqa: E402
from agent.loop import Agent, AgentDeps  # noqa: E402
from agent.model import ModelClient  # noqa: E402
from agent.pricing import PriceTable  # noqa: E402
from fakeclaude import DemoBrain, DemoModelServer, DemoSettings, Reply, TextBlock, ToolUseBlock  # noqa: E402
from fakeclaude.persona.demo_brain import filler_text  # noqa: E402
from fakeclaude.tokens import prompt_blocks  # noqa: E402
from store import threads as thread_store  # noqa: E402
from store import users as user_store  # noqa: E402
from store.db import Database  # noqa: E402
from store.models import MODEL_CALLS  # noqa: E402
from store.usage import TokenUsage  # noqa: E402
from tools import default_registry  # noqa: E402

TURNS = (10, 20, 50, 100)
# Compression thresholds tried for (d); (c) is the "off" limit. Each extra one adds a 100-turn episode (~30 s).
SWEEP = (10_000, 20_000)
# Sonnet 5.5 cache reads: $0.20 until two release notes say they fell to $0.10 on 2026-10-07 (unconfirmed),
# so ratios are also given at the older price.
OLD_PRICE_DAY = date(2026, 10, 6)
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "a": ("no caching, full history", {"cache_strategy": "none", "compress_enabled": False}),
    "b": ("system prompt cached only", {"cache_strategy": "system", "compress_enabled": False}),
    "c": ("Tollgate caching (incremental)", {"cache_strategy": "incremental", "compress_enabled": False}),
    "d": ("Tollgate caching + compression", {"cache_strategy": "incremental", "compress_enabled": True}),
}
FILE_CHARS = 1_420  # with the tool_output wrapper and JSON, a tool result block is ≈400 tokens
ANSWER_TOKENS = 134  # + the preamble and the call's JSON ≈ 150 output tokens per turn
WORDS = ("budget", "invoice", "meeting", "draft", "review", "client", "deadline", "milestone", "report", "estimate",
         "travel", "schedule", "vendor", "contract", "payment", "supplier", "backlog", "release", "sprint", "design")


def file_text(i: int) -> str:
    rnd = random.Random(i)
    out = f"Project log {i:03d}.\n"
    while len(out) < FILE_CHARS:
        out += " ".join(rnd.choice(WORDS) for _ in range(12)) + ".\n"
    return out[:FILE_CHARS]


class BenchBrain:
    """One read_file call per user message, then an answer; summary requests go to DemoBrain's rule."""

    def __init__(self) -> None:
        self.demo = DemoBrain()
        self.episode = 0  # in the tool_use ids, which the store keeps unique; fixed width, so equal token counts

    def respond(self, request: dict[str, Any]) -> Reply:
        last = request["messages"][-1]
        blocks = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        text = " ".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        if not results and not text.startswith("Turn "):
            return self.demo.respond(request)  # the compression's summary request
        if results:
            return Reply((TextBlock(filler_text(ANSWER_TOKENS)),))
        turn = int(text.split()[1].rstrip(":"))
        path = f"notes/file_{turn:03d}.txt"
        return Reply((TextBlock(f"I'll open {path}."),
                      ToolUseBlock("read_file", {"path": path}, id=f"toolu_{self.episode:04d}_{turn:04d}")), "tool_use")


async def _ignore(event: AgentEvent) -> None:
    return None


@dataclass
class Result:
    strategy: str
    turns: int
    usage: TokenUsage = field(default_factory=TokenUsage)
    usd: Decimal = Decimal(0)
    usd_old: Decimal = Decimal(0)  # the same usage at OLD_PRICE_DAY's prices
    summary_usd: Decimal = Decimal(0)
    breaks: int = 0  # counted by the agent's cache watch
    breaks_recounted: int = 0  # recounted here from the stored usage
    rewrites: int = 0
    compressions: int = 0
    per_turn_usd: list[Decimal] = field(default_factory=list)  # cumulative, after each turn
    seconds: float = 0.0

    @property
    def read_share(self) -> float:
        return self.usage.cache_read_tokens / self.usage.prompt_tokens if self.usage.prompt_tokens else 0.0


def _add(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(*(x + y for x, y in zip(a.__dict__.values(), b.__dict__.values(), strict=True)))


async def run_episode(db: Database, server: DemoModelServer, client: anthropic.AsyncAnthropic, prices: PriceTable,
                      settings: Settings, strategy: str, turns: int) -> Result:
    server.cache.clear()  # every episode starts cold
    brain = server.brain
    assert isinstance(brain, BenchBrain)
    brain.episode += 1
    s = settings.model_copy(update=STRATEGIES[strategy][1])
    agent = Agent(AgentDeps(db=db, settings=s, model=ModelClient(client), registry=default_registry(),
                            budget=Budget(db, prices, s)))
    thread = (await thread_store.create_thread(db, owner="bench")).id
    started = time.perf_counter()
    for t in range(1, turns + 1):
        done = await agent.run_turn(owner="bench", thread_id=thread, text=f"Turn {t}: read notes/file_{t:03d}.txt",
                                    emit=_ignore)
        if done.stop_reason != "end_turn":
            raise RuntimeError(f"turn {t} of ({strategy}) stopped: {done.stop_reason} {done.notices}")
    result = Result(strategy, turns, seconds=time.perf_counter() - started)
    await agent.close()
    result.breaks, result.rewrites = agent.context.watch.breaks, agent.context.watch.rewrites
    result.compressions = agent.context.compressions
    today = datetime.now(UTC).date()
    c = MODEL_CALLS.c
    async with db.read() as conn:
        rows = list(await conn.execute(select(c.turn_id, c.model, c.purpose, c.input_tokens, c.output_tokens,
                                              c.cache_write_5m_tokens, c.cache_write_1h_tokens, c.cache_read_tokens)
                                       .where(c.thread_id == thread).order_by(c.id)))
    previous_cached, after_summary, turn_ids = 0, False, []
    for r in rows:
        u = TokenUsage(r.input_tokens, r.output_tokens, r.cache_write_5m_tokens, r.cache_write_1h_tokens,
                       r.cache_read_tokens)
        cost = prices.cost_usd(r.model, u, today)
        result.usage, result.usd = _add(result.usage, u), result.usd + cost
        result.usd_old += prices.cost_usd(r.model, u, OLD_PRICE_DAY)
        if r.purpose == "summary":
            result.summary_usd += cost
            after_summary = True
        else:
            if u.cache_read_tokens < previous_cached and not after_summary:
                result.breaks_recounted += 1
            previous_cached = u.cache_read_tokens + u.cache_write_5m_tokens + u.cache_write_1h_tokens
            after_summary = False
        if not turn_ids or turn_ids[-1] != r.turn_id:
            turn_ids.append(r.turn_id)
            result.per_turn_usd.append(result.usd)
        else:
            result.per_turn_usd[-1] = result.usd
    return result


@dataclass(frozen=True)
class Job:
    strategy: str
    turns: int
    threshold: int | None = None  # None: the default compress_above_tokens


def run_job(job: Job) -> tuple[Job, Result, dict[str, Any]]:
    """One episode in its own process, database and server, so episodes run in parallel."""
    return asyncio.run(_job(job))


async def _job(job: Job) -> tuple[Job, Result, dict[str, Any]]:
    prices = PriceTable.load()
    shm = Path("/dev/shm")  # a tmpfs, where SQLite's fsyncs cost nothing: the loop, not the disk, is measured
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        settings = Settings(data_dir=Path(tmp), max_calls_per_thread=100_000, max_tokens_per_thread=10**9,
                            max_usd_per_thread=Decimal(10_000), user_daily_usd=Decimal(10_000),
                            user_monthly_usd=Decimal(100_000), global_daily_usd=Decimal(100_000))
        if job.threshold is not None:
            settings = settings.model_copy(update={"compress_above_tokens": job.threshold})
        db = Database.for_data_dir(settings.data_dir)
        await db.create_schema()
        await user_store.add_user(db, name="bench", password="orchard-apple-8")
        workspace = settings.workspaces_dir / "bench" / "notes"
        workspace.mkdir(parents=True)
        for i in range(1, job.turns + 1):
            (workspace / f"file_{i:03d}.txt").write_text(file_text(i))
        # Unpaced, and large deltas: how an answer is chunked changes no token count, only the run time.
        server = DemoModelServer(brain=BenchBrain(), settings=DemoSettings(first_token_delay_s=0, tokens_per_second=0,
                                                                           max_delta_tokens=256))
        client = anthropic.AsyncAnthropic(api_key="bench", base_url=server.start(), max_retries=0)
        try:
            result = await run_episode(db, server, client, prices, settings, job.strategy, job.turns)
            facts = _facts(server.requests)
        finally:
            await client.close()
            server.stop()
            await db.close()
    print(f"({job.strategy}) {job.turns:3d} turns{f', threshold {job.threshold:,}' if job.threshold else ''}: "
          f"${result.usd:.4f}, {result.seconds:.1f} s", flush=True)
    return job, result, facts


def run_all() -> tuple[dict[tuple[str, int], Result], dict[int, Result], dict[str, Any]]:
    default = Settings().compress_above_tokens
    jobs = [Job(key, turns) for turns in TURNS for key in STRATEGIES]
    jobs += [Job("d", max(TURNS), t) for t in SWEEP if t != default]
    jobs.sort(key=lambda j: -j.turns)  # longest first, for an even spread over the workers
    main: dict[tuple[str, int], Result] = {}
    sweep: dict[int, Result] = {}
    facts: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        for job, result, job_facts in pool.map(run_job, jobs):
            if job.threshold is None:
                main[job.strategy, job.turns] = result
                facts = facts or job_facts
            else:
                sweep[job.threshold] = result
    sweep[default] = main["d", max(TURNS)]
    facts["price_day"] = datetime.now(UTC).date().isoformat()
    facts["default_threshold"] = default
    return main, dict(sorted(sweep.items())), facts


def _facts(requests: list[dict[str, Any]]) -> dict[str, Any]:
    """Measured sizes, from what the server received."""
    chat = [r for r in requests if r.get("tools")]
    blocks = prompt_blocks(chat[0])
    results = [b.tokens for r in chat for b in prompt_blocks(r) if '"type":"tool_result"' in b.text]
    return {"prefix_tokens": sum(b.tokens for b in blocks if b.section in ("tools", "system")),
            "tool_result_tokens": round(sum(results) / len(results)) if results else 0}


def write_report(main: dict[tuple[str, int], Result], sweep: dict[int, Result], facts: dict[str, Any],
                 out: Path) -> None:
    lines = [
        "# Cost curve: caching strategies through the real agent loop",
        "",
        "Generated by `.venv/bin/python bench/cost_curve.py` (do not edit by hand). Each turn: a user message, a "
        f"read_file call whose result is ≈{facts['tool_result_tokens']} tokens, and an answer (≈150 output tokens "
        f"per turn, 2 model calls). Tools + system prompt: {facts['prefix_tokens']} tokens. Demo model server "
        "(real SDK over HTTP) with its documented cache accounting and chars/4 token estimator; USD at "
        f"claude-sonnet-5-5 prices in effect on {facts['price_day']} (agent/prices.toml), summary calls at "
        f"claude-haiku-5-5 prices. Compression threshold for (d): {facts['default_threshold']:,} tokens, keep last 6.",
        "",
        "| strategy | turns | input tokens | cache write | cache read | uncached | USD | × (a) | × (a), read $0.20 "
        "| read share | breaks | rewrites |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for turns in TURNS:
        naive, naive_old = main["a", turns].usd, main["a", turns].usd_old
        for key, (label, _) in STRATEGIES.items():
            r = main[key, turns]
            u = r.usage
            writes = u.cache_write_5m_tokens + u.cache_write_1h_tokens
            lines.append(f"| ({key}) {label} | {turns} | {u.prompt_tokens:,} | {writes:,} | {u.cache_read_tokens:,} "
                         f"| {u.input_tokens:,} | ${r.usd:.4f} | {r.usd / naive:.3f} | {r.usd_old / naive_old:.3f} "
                         f"| {r.read_share:.3f} "
                         f"| {r.breaks} | {r.rewrites} |")
    lines += [
        "",
        "Input tokens = uncached + cache write + cache read, summed over all calls (summary calls included). "
        "Breaks: calls that read less than the previous call of the thread had cached, counted by the agent's "
        "cache watch (recounted from the stored usage: "
        + ", ".join(sorted({str(r.breaks_recounted) for r in main.values()})) + "). Rewrites: the drop right after "
        "a compression, reported apart from breaks. \"× (a), read $0.20\": the same usage priced before the "
        "unconfirmed 2026-10-07 cut of Sonnet 5.5 cache reads to $0.10.",
        "",
        "## Compression threshold, strategy (d), 100-turn episode",
        "",
        "| threshold | USD at 20 turns | at 50 turns | at 100 turns | × (a) at 100 | compressions | summary USD |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    naive100 = main["a", 100].usd
    rows: list[tuple[str, Result]] = [(f"{t:,}", r) for t, r in sweep.items()]
    for label, r in [*rows, ("off, i.e. (c)", main["c", max(TURNS)])]:
        lines.append(f"| {label} | ${r.per_turn_usd[19]:.4f} | ${r.per_turn_usd[49]:.4f} | ${r.usd:.4f} "
                     f"| {r.usd / naive100:.3f} | {r.compressions} | ${r.summary_usd:.4f} |")
    default, low = sweep[facts["default_threshold"]], sweep[min(sweep)]
    lines += ["", f"The default, {facts['default_threshold']:,}, is a trade-off: {min(sweep):,} costs "
              f"{1 - low.usd / default.usd:.0%} less at 100 turns but compresses {low.compressions} times instead of "
              f"{default.compressions}, and every compression drops detail from the model's view and rewrites the "
              f"cache; never compressing costs {main['c', max(TURNS)].usd / default.usd:.1f}x as much at 100 turns.",
              ""]
    out.write_text("\n".join(lines))


def plot(main: dict[tuple[str, int], Result], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ratio) = plt.subplots(1, 2, figsize=(12, 5))
    naive = main["a", max(TURNS)].per_turn_usd
    for key, (label, _) in STRATEGIES.items():
        curve = main[key, max(TURNS)].per_turn_usd
        turns = range(1, len(curve) + 1)
        line = ax.plot(turns, [float(x) for x in curve], label=f"({key}) {label}")[0]
        ax.scatter(TURNS, [float(main[key, t].usd) for t in TURNS], s=14, color=line.get_color())
        ratio.plot(turns, [float(x / n) for x, n in zip(curve, naive, strict=True)], color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("turns")
    ax.set_ylabel("cumulative cost, USD (claude-sonnet-5-5), log scale")
    ax.set_title("Cost (lines: 100-turn episode; dots: separate episodes)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ratio.set_xlabel("turns")
    ratio.set_ylabel("cost / cost of (a)")
    ratio.set_ylim(0, 1.05)
    ratio.set_title("Ratio to no caching", fontsize=10)
    ratio.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def check(main: dict[tuple[str, int], Result]) -> list[str]:
    problems = []
    best = {t: min(main["c", t].usd, main["d", t].usd) / main["a", t].usd for t in (20, 50)}
    if best[20] > Decimal("0.25"):
        problems.append(f"(c)/(d) at 20 turns is {best[20]:.3f}x naive, target <= 0.25")
    if best[50] > Decimal("0.16"):
        problems.append(f"(c)/(d) at 50 turns is {best[50]:.3f}x naive, target <= 0.16")
    if max(main["c", 20].read_share, main["d", 20].read_share) < 0.93:
        problems.append("cache-read share at 20 turns is below 0.93")
    for (key, turns), r in main.items():
        if r.breaks or r.breaks_recounted:
            problems.append(f"({key}) {turns} turns: {r.breaks} cache breaks ({r.breaks_recounted} recounted)")
    for key in STRATEGIES:  # an N-turn episode is exactly the first N turns of the longest one
        for t in TURNS:
            if main[key, t].usd != main[key, max(TURNS)].per_turn_usd[t - 1]:
                problems.append(f"({key}) {t} turns differs from the first {t} turns of the longest episode")
    return problems


def main(report: Callable[[str], None] = print) -> int:
    started = time.perf_counter()
    results, sweep, facts = run_all()
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    write_report(results, sweep, facts, docs / "cost-curve.md")
    plot(results, docs / "cost-curve.png")
    report((docs / "cost-curve.md").read_text())
    problems = check(results)
    for p in problems:
        report(f"TARGET MISSED: {p}")
    report(f"done in {time.perf_counter() - started:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
