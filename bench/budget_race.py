"""Budget reservations under N concurrent sessions of ONE user, through the real Agent.

    .venv/bin/python bench/budget_race.py            # N = 10, 50, 200; writes the table into docs/budgets.md
    .venv/bin/python bench/budget_race.py --quick    # N = 10 only, prints, writes nothing
    .venv/bin/python bench/budget_race.py --postgres # N = 10, 50, 200 on a throwaway PostgreSQL 15 cluster
                                                     # (tests/pg_cluster.py); writes docs/performance.md

Each session is a thread of user "alice" sending one message at the same moment. The model is the demo
server (real anthropic SDK over HTTP) answering after `FIRST_TOKEN_S`, and every answer reports 20k
output tokens ($0.20 at claude-sonnet-5-5), so the daily limit (room for half the sessions' worst
cases) binds and the rest are refused. Budget.reserve / Budget.settle are timed by wrapping the
instance's methods here; the library is not changed. Baseline, same run: the same number of plain
sqlite3 INSERTs then UPDATEs of a model_calls-like row, one transaction each, WAL, synchronous=NORMAL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.budget import Budget  # noqa: E402
from agent.config import Settings  # noqa: E402
from agent.demo_model import DemoModelServer, DemoSettings, Reply, ScriptedBrain, TextBlock  # noqa: E402
from agent.events import AgentEvent  # noqa: E402
from agent.loop import Agent, AgentDeps  # noqa: E402
from agent.model import ModelClient  # noqa: E402
from agent.pricing import PriceTable  # noqa: E402
from store import threads as thread_store  # noqa: E402
from store import usage as usage_store  # noqa: E402
from store import users as user_store  # noqa: E402
from store.db import Database  # noqa: E402
from store.models import MODEL_CALLS  # noqa: E402
from tools import default_registry  # noqa: E402

FIRST_TOKEN_S = 0.2  # the demo model's time to first token; a real model is slower, so shares here are upper bounds
OUTPUT = 20_000
USAGE = {"input_tokens": 1_000, "output_tokens": OUTPUT, "cache_creation_input_tokens": 0,
         "ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0, "cache_read_input_tokens": 0}
DOC = ROOT / "docs" / "budgets.md"
BEGIN, END = "<!-- bench:budget_race:begin -->", "<!-- bench:budget_race:end -->"


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))]


_tag: ContextVar[str] = ContextVar("tag", default="other")


def timed(fn: Callable[..., Awaitable[Any]], into: list[float], tag: str) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _tag.set(tag)
        t0 = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            into.append((time.perf_counter() - t0) * 1000)
            _tag.reset(token)
    return wrapper


def time_writer(db: Database, held: list[tuple[str, float]]) -> None:
    """Records how long each write transaction holds the writer: from the start of its work (after BEGIN
    IMMEDIATE on SQLite, after the advisory write lock on PostgreSQL) to after COMMIT."""
    transact = db.transact

    async def wrapped(work: Callable[[Any], Any]) -> Any:
        start: float | None = None

        def timed_work(conn: Any) -> Any:
            nonlocal start
            start = time.perf_counter()
            return work(conn)

        try:
            return await transact(timed_work)
        finally:
            if start is not None:
                held.append((_tag.get(), (time.perf_counter() - start) * 1000))

    db.transact = wrapped  # type: ignore[method-assign]


class Approver:
    async def decide(self, approval: Any) -> Any:
        raise AssertionError("no tool calls in this benchmark")


async def run_sessions(n: int, data_dir: Path, url: str | None = None) -> dict[str, Any]:
    # Only the user's daily limit should bind: the monthly and global ones are set out of the way.
    settings = Settings(data_dir=data_dir, max_tokens=OUTPUT, global_daily_usd=Decimal(1_000_000))
    db = Database(url) if url else Database.for_data_dir(data_dir)
    await db.create_schema()
    await user_store.add_user(db, name="alice", password="orchard-apple-1")
    brain = ScriptedBrain([Reply(blocks=(TextBlock("ok"),), usage_override=USAGE)] * n)
    server = DemoModelServer(brain=brain, settings=DemoSettings(first_token_delay_s=FIRST_TOKEN_S,
                                                                tokens_per_second=0.0))
    client = anthropic.AsyncAnthropic(api_key="bench", base_url=server.start(), max_retries=2)
    budget = Budget(db, PriceTable.load(), settings)
    reserve_ms: list[float] = []
    settle_ms: list[float] = []
    held: list[tuple[str, float]] = []
    budget.reserve = timed(budget.reserve, reserve_ms, "reserve")  # type: ignore[method-assign]
    budget.settle = timed(budget.settle, settle_ms, "settle")  # type: ignore[method-assign]
    time_writer(db, held)
    agent = Agent(AgentDeps(db=db, settings=settings, model=ModelClient(client), registry=default_registry(),
                            budget=budget))
    try:
        threads = [(await thread_store.create_thread(db, owner="alice")).id for _ in range(n)]
        # One probe reservation gives this prompt's worst case; the limit has room for half the sessions.
        probe = await budget.reserve(user="alice", thread_id=None, turn_id="probe", model=settings.model,
                                     purpose="chat", prompt_tokens=3_500, max_tokens=OUTPUT)
        await budget.release(probe, usage_store.TokenUsage(), error="probe", latency_ms=0.0)
        reserve_ms.clear()
        settle_ms.clear()
        held.clear()
        limit = probe.nanousd * max(n // 2, 1)
        await usage_store.set_budget(db, user="alice", daily_nanousd=limit, monthly_nanousd=limit * 100)

        stopped_by: set[str] = set()

        async def session(tid: str) -> tuple[str, float]:
            async def sink(event: AgentEvent) -> None:
                return None
            t0 = time.perf_counter()
            done = await agent.run_turn(owner="alice", thread_id=tid, text="hi", emit=sink, approver=Approver())
            stopped_by.update(n.message.split(" would be exceeded")[0] for n in done.notices if n.kind == "budget")
            return done.stop_reason, (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        results = await asyncio.gather(*(session(t) for t in threads), return_exceptions=True)
        wall = time.perf_counter() - t0
        errors = [r for r in results if isinstance(r, BaseException)]
        for kind in sorted({f"{type(e).__name__}: {str(e)[:160]}" for e in errors})[:5]:
            print(f"N={n} error: {kind}", file=sys.stderr)
        ok = [ms for r in results if not isinstance(r, BaseException) for reason, ms in [r] if reason == "end_turn"]
        refused = sum(1 for r in results if not isinstance(r, BaseException) and r[0] == "budget")
        async with db.read() as conn:
            rows = (await conn.execute(select(MODEL_CALLS).where(MODEL_CALLS.c.turn_id != "probe"))).all()
        spent = sum(r.cost_nanousd for r in rows)
        left_open = sum(1 for r in rows if r.status == "reserved")
    finally:
        await agent.close()
        await client.close()
        server.stop()
        await db.close()
    budget_ms = (sum(reserve_ms) + sum(settle_ms)) / max(len(ok) + refused, 1)
    return {"n": n, "ok": len(ok), "refused": refused, "errors": len(errors), "left_open": left_open,
            "limit": limit, "spent": spent, "stopped_by": stopped_by, "overspend": max(spent - limit, 0),
            "wall_s": wall,
            "reserve": reserve_ms, "settle": settle_ms, "turn_p50": pct(ok, 50),
            "held": {t: [ms for tag, ms in held if tag == t] for t in ("reserve", "settle")},
            "writer_busy": sum(ms for _, ms in held) / 1000 / wall,
            "share": budget_ms / (sum(ok) / len(ok)) if ok else float("nan")}


def sqlite_baseline(n: int, data_dir: Path) -> dict[str, list[float]]:
    """n INSERTs then n UPDATEs, one BEGIN IMMEDIATE transaction each, plain sqlite3."""
    conn = sqlite3.connect(data_dir / "baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE calls (id INTEGER PRIMARY KEY, key TEXT UNIQUE, user_id INT, thread_id TEXT, "
                 "turn_id TEXT, model TEXT, status TEXT, reserved_nanousd INT, cost_nanousd INT, "
                 "reserved_tokens INT, input_tokens INT, output_tokens INT, created_at REAL, day TEXT, month TEXT)")
    keys = [uuid.uuid4().hex for _ in range(n)]
    ins: list[float] = []
    upd: list[float] = []
    for k in keys:
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO calls (key, user_id, thread_id, turn_id, model, status, reserved_nanousd, "
                     "reserved_tokens, created_at, day, month) VALUES (?, 1, ?, ?, 'm', 'reserved', 1, 1, ?, "
                     "'2026-01-01', '2026-01')", (k, k, k, time.time()))
        conn.execute("COMMIT")
        ins.append((time.perf_counter() - t0) * 1000)
    for k in keys:
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE calls SET status='settled', cost_nanousd=1, input_tokens=1, output_tokens=1 "
                     "WHERE key=? AND status='reserved'", (k,))
        conn.execute("COMMIT")
        upd.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return {"insert": ins, "update": upd}


def report(results: list[dict[str, Any]], baselines: dict[int, dict[str, list[float]]], cmd: str) -> str:
    lines = [
        f"Command: `{cmd}`  ",
        f"Machine: nproc={os.cpu_count()}, Python {platform.python_version()}, {platform.machine()}, "
        f"loadavg {os.getloadavg()[0]:.2f} at the end (shared with other work: absolute times are noisy, ratios "
        "less so)  ",
        f"Model: demo server, first token after {FIRST_TOKEN_S * 1000:.0f} ms, 20k output tokens reported "
        "per call; daily limit = half the sessions' worst cases.",
        "",
        "| N | ran / refused | overspend | reserve p50 / p99 ms | reserve in writer p50 / p99 ms | "
        "settle p50 / p99 ms | settle in writer p50 ms | sqlite3 insert / update p50 ms | "
        "in-writer ÷ sqlite3 (reserve, settle) | budget share of a turn | writer busy | turn p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        b = baselines[r["n"]]
        bi, bu = pct(b["insert"], 50), pct(b["update"], 50)
        hr, hs = r["held"]["reserve"], r["held"]["settle"]
        lines.append(
            f"| {r['n']} | {r['ok']} / {r['refused']} | ${r['overspend'] / 1e9:.6f} | "
            f"{pct(r['reserve'], 50):.1f} / {pct(r['reserve'], 99):.1f} | {pct(hr, 50):.2f} / {pct(hr, 99):.2f} | "
            f"{pct(r['settle'], 50):.1f} / {pct(r['settle'], 99):.1f} | {pct(hs, 50):.2f} | "
            f"{bi:.3f} / {bu:.3f} | {pct(hr, 50) / bi:.0f}×, {pct(hs, 50) / bu:.0f}× | {r['share'] * 100:.1f}% | "
            f"{r['writer_busy'] * 100:.0f}% | {r['turn_p50']:.0f} |")
    lines += [
        "",
        "- reserve / settle: the whole `Budget.reserve` / `Budget.settle` call as a session sees it, including "
        "the wait for the single writer connection behind the other sessions' writes (messages, titles, "
        "approvals, other reservations).",
        "- in writer: from BEGIN IMMEDIATE to after COMMIT, i.e. the serialised part that bounds throughput.",
        "- budget share of a turn: mean (reserve + settle) per session ÷ mean wall time of a completed turn.",
        "- writer busy: time any write transaction held the writer ÷ the run's wall time.",
    ]
    return "\n".join(lines)


PERF_DOC = ROOT / "docs" / "performance.md"
PG_BEGIN, PG_END = "<!-- bench:budget_race_postgres:begin -->", "<!-- bench:budget_race_postgres:end -->"


def postgres_report(results: list[dict[str, Any]], cmd: str, version: str) -> str:
    lines = [
        f"Command: `{cmd}`  ",
        f"Machine: nproc={os.cpu_count()}, Python {platform.python_version()}, {version} (throwaway cluster, "
        f"fsync off), loadavg {os.getloadavg()[0]:.2f} at the end (shared machine: times are noisy)  ",
        "One process, N concurrent sessions of ONE user; daily limit = half the sessions' worst cases. Write "
        "transactions hold one advisory lock (docs/budgets.md).",
        "",
        "| N | ran / refused | overspend | errors | left open | reserve p50 / p99 ms | reserve holding the lock "
        "p50 / p99 ms | settle p50 / p99 ms | lock busy | turn p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        hr = r["held"]["reserve"]
        lines.append(
            f"| {r['n']} | {r['ok']} / {r['refused']} | ${r['overspend'] / 1e9:.6f} | {r['errors']} | "
            f"{r['left_open']} | {pct(r['reserve'], 50):.1f} / {pct(r['reserve'], 99):.1f} | "
            f"{pct(hr, 50):.2f} / {pct(hr, 99):.2f} | {pct(r['settle'], 50):.1f} / {pct(r['settle'], 99):.1f} | "
            f"{r['writer_busy'] * 100:.0f}% | {r['turn_p50']:.0f} |")
    return "\n".join(lines)


async def main_postgres(sizes: list[int], *, write_doc: bool) -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_cluster import PgCluster  # tests/pg_cluster.py: the same throwaway cluster the tests start

    results = []
    with PgCluster.started() as pg, tempfile.TemporaryDirectory() as tmp:
        with pg.connect() as conn:
            version = " ".join(str(conn.execute("SHOW server_version").fetchone()[0]).split()[:1])
        for n in sizes:
            pg.create_database(f"bench_n{n}")
            setup = Database(pg.url(f"bench_n{n}"))
            await setup.upgrade_schema()
            await setup.close()
            results.append(await run_sessions(n, Path(tmp) / f"n{n}", url=pg.url(f"bench_n{n}")))
    text = postgres_report(results, ".venv/bin/python bench/budget_race.py --postgres", f"PostgreSQL {version}")
    print(text)
    bad = [r for r in results if r["overspend"] or r["errors"] or r["left_open"]]
    if not write_doc:
        return 1 if bad else 0
    doc = PERF_DOC.read_text()
    block = f"{PG_BEGIN}\n{text}\n{PG_END}"
    PERF_DOC.write_text(re.sub(re.escape(PG_BEGIN) + ".*?" + re.escape(PG_END), lambda _: block, doc, flags=re.S)
                        if PG_BEGIN in doc else doc.rstrip() + "\n\n## Budget reservations on PostgreSQL\n\n"
                        + block + "\n")
    return 1 if bad else 0


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="N=10 only; do not write docs/budgets.md")
    ap.add_argument("--postgres", action="store_true", help="N=10, 50, 200 on a throwaway PostgreSQL cluster")
    ap.add_argument("--sizes", help="with --postgres: these N only (comma-separated), prints, writes nothing")
    args = ap.parse_args()
    if args.postgres:
        sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else [10] if args.quick else [10, 50, 200]
        return await main_postgres(sizes, write_doc=not args.quick and not args.sizes)
    sizes = [10] if args.quick else [1, 10, 50, 200]
    results, baselines = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            d = Path(tmp) / f"n{n}"
            results.append(await run_sessions(n, d))
            baselines[n] = sqlite_baseline(n, d)
    cmd = ".venv/bin/python bench/budget_race.py" + (" --quick" if args.quick else "")
    text = report(results, baselines, cmd)
    print(text)
    bad = [r for r in results if r["overspend"] or r["errors"] or r["left_open"]
           or r["stopped_by"] - {"Stopped: the daily budget for alice"}]
    for r in bad:
        print(f"FAIL N={r['n']}: overspend {r['overspend']} errors {r['errors']} open {r['left_open']} "
              f"stopped by {r['stopped_by']}", file=sys.stderr)
    if not args.quick:
        doc = DOC.read_text() if DOC.exists() else f"# Budgets\n\n{BEGIN}\n{END}\n"
        block = f"{BEGIN}\n{text}\n{END}"
        DOC.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
                       if BEGIN in doc else doc.rstrip() + "\n\n" + block + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
