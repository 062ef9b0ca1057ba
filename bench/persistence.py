"""Benchmark 2: the per-turn write path — store.threads.append_message ×2, store.usage.reserve + settle.

Measured alone (one writer, sequential turns) and with 20 concurrent writers (asyncio tasks sharing the
app's Database: one writer thread, BEGIN IMMEDIATE), against plain `sqlite3` doing the same SQL on a
database with the same schema (created by the same Database.create_schema), WAL + synchronous=NORMAL
+ busy_timeout, one connection per writer thread. Reported per turn (the 4 transactions) and per
transaction. Targets: p50 ≤ 5 ms, p99 ≤ 50 ms (per transaction; the per-turn figures are shown too).
Run: .venv/bin/python bench/persistence.py
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, pct, table
from store import threads as thread_store
from store import usage as usage_store
from store import users as user_store
from store.db import Database
from store.usage import SpendLimit, TokenUsage

ALONE_TURNS = 200
WRITERS = 20
TURNS_PER_WRITER = 15
BIG = 10**15
LIMITS = [SpendLimit("d", "user_day", BIG), SpendLimit("m", "user_month", BIG), SpendLimit("g", "global_day", BIG),
          SpendLimit("t", "thread_usd", BIG), SpendLimit("tt", "thread_tokens", BIG),
          SpendLimit("tc", "thread_calls", BIG), SpendLimit("uc", "turn_calls", BIG)]
USER_MSG = [{"type": "text", "text": "what files do I have? " * 5}]
ASSISTANT_MSG = [{"type": "text", "text": "Here is what I found. " * 40}]
USAGE = TokenUsage(input_tokens=1200, output_tokens=230, cache_read_tokens=4000)


# ---------------- the app's store ----------------
async def store_turn(db: Database, user: str, tid: str, lat: dict[str, list[float]]) -> None:
    t0 = time.perf_counter()
    await thread_store.append_message(db, owner=user, thread_id=tid, role="user", content=USER_MSG)
    t1 = time.perf_counter()
    turn = uuid.uuid4().hex
    key = await usage_store.reserve(db, user=user, thread_id=tid, turn_id=turn, model="claude-sonnet-5-5",
                                    purpose="chat", amount_nanousd=50_000_000, tokens=9000, limits=LIMITS)
    t2 = time.perf_counter()
    await thread_store.append_message(db, owner=user, thread_id=tid, role="assistant", content=ASSISTANT_MSG)
    t3 = time.perf_counter()
    await usage_store.settle(db, key=key, usage=USAGE, cost_nanousd=12_345_678, stop_reason="end_turn",
                             ttft_ms=300.0, latency_ms=900.0)
    t4 = time.perf_counter()
    for name, dt in (("append", t1 - t0), ("reserve", t2 - t1), ("append", t3 - t2), ("settle", t4 - t3)):
        lat[name].append(dt)
        lat["txn"].append(dt)
    lat["turn"].append(t4 - t0)


async def store_run(data_dir: Path, writers: int, turns: int) -> tuple[dict[str, list[float]], float]:
    db = Database.for_data_dir(data_dir)
    await db.create_schema()
    users = [f"u{i}" for i in range(writers)]
    for u in users:
        await user_store.add_user(db, name=u, password="orchard-apple-6")
    tids = [(await thread_store.create_thread(db, owner=u)).id for u in users]
    lat: dict[str, list[float]] = defaultdict(list)
    warm: dict[str, list[float]] = defaultdict(list)
    await store_turn(db, users[0], tids[0], warm)

    async def writer(i: int) -> None:
        for _ in range(turns):
            await store_turn(db, users[i], tids[i], lat)

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    wall = time.perf_counter() - t0
    await db.close()
    return lat, wall


# ---------------- plain sqlite3, same SQL ----------------
def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def raw_append(conn: sqlite3.Connection, user: str, tid: str, role: str, content: list) -> None:
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT id FROM threads WHERE id=? AND owner_id=(SELECT id FROM users WHERE name=?)",
                        (tid, user)).fetchone() is None:
            raise LookupError("no such thread")
        last = conn.execute("SELECT max(seq) FROM messages WHERE thread_id=?", (tid,)).fetchone()[0]
        seq = 0 if last is None else last + 1
        conn.execute("INSERT INTO messages (thread_id, seq, role, content_json, incomplete, created_at) "
                     "VALUES (?,?,?,?,?,?)", (tid, seq, role, json.dumps(content, ensure_ascii=False), 0, now))
        conn.execute("UPDATE threads SET updated_at=? WHERE id=?", (now, tid))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


_SPENT = "coalesce(sum(CASE WHEN status='reserved' THEN reserved_nanousd ELSE cost_nanousd END),0)"
_TOK = ("coalesce(sum(CASE WHEN status='reserved' THEN reserved_tokens ELSE input_tokens+output_tokens+"
        "cache_write_5m_tokens+cache_write_1h_tokens+cache_read_tokens END),0)")


def raw_reserve(conn: sqlite3.Connection, user: str, tid: str, turn: str) -> str:
    now = time.time()
    day = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")
    month = day[:7]
    conn.execute("BEGIN IMMEDIATE")
    try:
        uid = conn.execute("SELECT id FROM users WHERE name=?", (user,)).fetchone()[0]
        checks = [(f"SELECT {_SPENT} FROM model_calls WHERE user_id=? AND day=?", (uid, day)),
                  (f"SELECT {_SPENT} FROM model_calls WHERE user_id=? AND month=?", (uid, month)),
                  (f"SELECT {_SPENT} FROM model_calls WHERE day=?", (day,)),
                  (f"SELECT {_SPENT} FROM model_calls WHERE thread_id=?", (tid,)),
                  (f"SELECT {_TOK} FROM model_calls WHERE thread_id=?", (tid,)),
                  ("SELECT count(*) FROM model_calls WHERE thread_id=?", (tid,)),
                  ("SELECT count(*) FROM model_calls WHERE turn_id=?", (turn,))]
        for sql, args in checks:
            if conn.execute(sql, args).fetchone()[0] > BIG:
                raise RuntimeError("limit")
        key = uuid.uuid4().hex
        conn.execute("INSERT INTO model_calls (key, user_id, thread_id, turn_id, model, purpose, status, "
                     "reserved_nanousd, cost_nanousd, reserved_tokens, input_tokens, output_tokens, "
                     "cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, created_at, day, month) "
                     "VALUES (?,?,?,?,?,?,'reserved',?,0,?,0,0,0,0,0,?,?,?)",
                     (key, uid, tid, turn, "claude-sonnet-5-5", "chat", 50_000_000, 9000, now, day, month))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return key


def raw_settle(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE model_calls SET status='settled', cost_nanousd=?, input_tokens=?, output_tokens=?, "
                 "cache_write_5m_tokens=?, cache_write_1h_tokens=?, cache_read_tokens=?, stop_reason=?, "
                 "ttft_ms=?, latency_ms=?, error=NULL WHERE key=? AND status='reserved'",
                 (12_345_678, USAGE.input_tokens, USAGE.output_tokens, 0, 0, USAGE.cache_read_tokens, "end_turn",
                  300.0, 900.0, key))
    conn.execute("COMMIT")


def raw_turn(conn: sqlite3.Connection, user: str, tid: str, lat: dict[str, list[float]], lock: threading.Lock) -> None:
    t0 = time.perf_counter()
    raw_append(conn, user, tid, "user", USER_MSG)
    t1 = time.perf_counter()
    key = raw_reserve(conn, user, tid, uuid.uuid4().hex)
    t2 = time.perf_counter()
    raw_append(conn, user, tid, "assistant", ASSISTANT_MSG)
    t3 = time.perf_counter()
    raw_settle(conn, key)
    t4 = time.perf_counter()
    with lock:
        for name, dt in (("append", t1 - t0), ("reserve", t2 - t1), ("append", t3 - t2), ("settle", t4 - t3)):
            lat[name].append(dt)
            lat["txn"].append(dt)
        lat["turn"].append(t4 - t0)


async def raw_run(data_dir: Path, writers: int, turns: int) -> tuple[dict[str, list[float]], float]:
    db = Database.for_data_dir(data_dir)  # same schema, created the same way
    await db.create_schema()
    users = [f"u{i}" for i in range(writers)]
    for u in users:
        await user_store.add_user(db, name=u, password="orchard-apple-6")
    tids = [(await thread_store.create_thread(db, owner=u)).id for u in users]
    await db.close()
    path = data_dir / "tollgate.db"
    lat: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    conns = [_connect(path) for _ in range(writers)]
    raw_turn(conns[0], users[0], tids[0], defaultdict(list), lock)  # warm-up

    def writer(i: int) -> None:
        for _ in range(turns):
            raw_turn(conns[i], users[i], tids[i], lat, lock)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return lat, wall


async def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        results["store, 1 writer"] = await store_run(base / "s1", 1, ALONE_TURNS)
        results["sqlite3, 1 writer"] = await raw_run(base / "r1", 1, ALONE_TURNS)
        results[f"store, {WRITERS} writers"] = await store_run(base / "s20", WRITERS, TURNS_PER_WRITER)
        results[f"sqlite3, {WRITERS} writers"] = await raw_run(base / "r20", WRITERS, TURNS_PER_WRITER)
    print(f"Machine: {machine()}\n")
    print(f"Per-turn write path = append_message(user) + usage.reserve (7 limits) + append_message(assistant) + "
          f"usage.settle. 1 writer: {ALONE_TURNS} sequential turns; {WRITERS} writers: {TURNS_PER_WRITER} turns "
          "each, all at once (store: asyncio tasks on the app's Database; sqlite3: one thread + connection each).\n")
    rows = []
    for name, (lat, wall) in results.items():
        t, x = lat["txn"], lat["turn"]
        rows.append([name, len(x), pct(t, 50) * 1e3, pct(t, 99) * 1e3, pct(x, 50) * 1e3, pct(x, 99) * 1e3,
                     pct(lat["reserve"], 50) * 1e3, pct(lat["reserve"], 99) * 1e3, len(x) / wall])
    print(table(["variant", "turns", "txn p50 ms", "txn p99 ms", "turn p50 ms", "turn p99 ms",
                 "reserve p50 ms", "reserve p99 ms", "turns/s"], rows))
    print("\nRatios store / plain sqlite3 (same run):\n")
    ratio_rows = []
    for n in ("1 writer", f"{WRITERS} writers"):
        s, r = results[f"store, {n}"][0], results[f"sqlite3, {n}"][0]
        ratio_rows.append([n, pct(s["txn"], 50) / pct(r["txn"], 50), pct(s["txn"], 99) / pct(r["txn"], 99),
                           pct(s["turn"], 50) / pct(r["turn"], 50), pct(s["turn"], 99) / pct(r["turn"], 99)])
    print(table(["writers", "txn p50 ×", "txn p99 ×", "turn p50 ×", "turn p99 ×"], ratio_rows))
    print("\nTargets (store, per transaction): p50 ≤ 5 ms, p99 ≤ 50 ms")
    for name, (lat, _) in results.items():
        if name.startswith("store"):
            p50, p99 = pct(lat["txn"], 50) * 1e3, pct(lat["txn"], 99) * 1e3
            print(f"- {name}: p50 {p50:.2f} ms {'MET' if p50 <= 5 else 'MISSED'}, "
                  f"p99 {p99:.2f} ms {'MET' if p99 <= 50 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
