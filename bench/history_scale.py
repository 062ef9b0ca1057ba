"""Benchmark 4: history at scale.

A thread of 1,000 messages (and the 1,000 UI steps the chat would have rendered for them):
store.threads.load_messages and ui.datalayer.StoreDataLayer.get_thread (target ≤ 300 ms);
list_threads (limit 50) for a user with 10,000 threads (target ≤ 100 ms, server time = the call);
RSS before/after repeated calls (memory should stay flat).
Run: .venv/bin/python bench/history_scale.py
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from agent.config import Settings
from bench._common import machine, median, pct, rss_mb, table
from store import threads as thread_store
from store import users as user_store
from store.models import MESSAGES, THREADS, UI_STEPS
from ui.datalayer import StoreDataLayer
from ui.runtime import build_runtime

N_MESSAGES = 1000
N_THREADS = 10_000
REPS = 20


async def timed(fn, reps: int = REPS) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rt = await build_runtime(Settings(data_dir=Path(tmp) / "data"))
        try:
            db = rt.db
            await user_store.add_user(db, name="alice", password="orchard-apple-1")
            await user_store.add_user(db, name="bob", password="orchard-apple-3")
            big = (await thread_store.create_thread(db, owner="alice", title="long thread")).id
            now = time.time()
            msgs, steps = [], []
            for i in range(N_MESSAGES):
                role = "user" if i % 2 == 0 else "assistant"
                text = (f"question {i}: what files do I have? " * 3) if role == "user" else (
                    f"answer {i}: here is what I found. " * 25)
                msgs.append(dict(thread_id=big, seq=i, role=role,
                                 content_json=json.dumps([{"type": "text", "text": text}]),
                                 incomplete=False, created_at=now + i))
                steps.append(dict(id=uuid.uuid4().hex, thread_id=big, seq=now + i, parent_id=None,
                                  name="alice" if role == "user" else "Tollgate",
                                  type="user_message" if role == "user" else "assistant_message",
                                  input="", output=text, is_error=False, created_at=None, start=None, end=None,
                                  show_input=None, language=None, metadata_json="{}"))
            def big_thread(conn: Any, msgs: list[dict[str, Any]] = msgs, steps: list[dict[str, Any]] = steps) -> None:
                conn.execute(insert(MESSAGES), msgs)
                conn.execute(insert(UI_STEPS), steps)

            await db.transact(big_thread)

            def bobs_threads(conn: Any) -> None:  # bob: 10,000 threads (alice's own thread list stays small)
                bob_id = conn.exec_driver_sql("SELECT id FROM users WHERE name='bob'").scalar_one()
                conn.execute(insert(THREADS), [
                    dict(id=uuid.uuid4().hex, owner_id=bob_id, title=f"thread {i}", created_at=now - i,
                         updated_at=now - i) for i in range(N_THREADS)])

            await db.transact(bobs_threads)
            del msgs, steps
            gc.collect()

            layer = StoreDataLayer(lambda: _ready(rt))

            async def load() -> None:
                assert len(await thread_store.load_messages(db, owner="alice", thread_id=big)) == N_MESSAGES

            async def get_thread() -> None:
                t = await layer.get_thread(big)
                assert t is not None and len(t["steps"]) == N_MESSAGES

            async def list_threads() -> None:
                assert len(await thread_store.list_threads(db, owner="bob", limit=50)) == 50

            async def list_threads_page2() -> None:
                assert len(await thread_store.list_threads(db, owner="bob", limit=50, before=now - 5000)) == 50

            async def search() -> None:
                await thread_store.list_threads(db, owner="bob", limit=50, search="thread 99")

            async def search_text() -> None:  # FTS5 over the 1,000 messages of alice's big thread
                assert [t.id for t in await thread_store.list_threads(db, owner="alice", search="what I fou")] == [big]

            await load(), await get_thread(), await list_threads()  # warm-up
            gc.collect()
            rss0 = rss_mb()
            res = {
                f"load_messages, {N_MESSAGES} msgs": (await timed(load), 300),
                f"StoreDataLayer.get_thread, {N_MESSAGES} steps": (await timed(get_thread), 300),
                f"list_threads limit 50, {N_THREADS:,} threads": (await timed(list_threads), 100),
                "list_threads page 2 (before=…)": (await timed(list_threads_page2), 100),
                f"list_threads search='thread 99' ({N_THREADS:,} titles)": (await timed(search, 5), 100),
                f"list_threads search='what I fou' (FTS5, {N_MESSAGES} messages)": (await timed(search_text), 100),
            }
            for _ in range(30):  # more repetitions: memory must not grow with them
                await load()
                await get_thread()
                await list_threads()
            gc.collect()
            rss1 = rss_mb()
        finally:
            await rt.close()
    print(f"Machine: {machine()}\n")
    rows = []
    for name, (vals, target) in res.items():
        p50 = median(vals) * 1e3
        rows.append([name, len(vals), p50, pct(vals, 99) * 1e3, max(vals) * 1e3, f"≤ {target}",
                     "MET" if p50 <= target else "MISSED"])
    print(table(["operation", "n", "p50 ms", "p99 ms", "max ms", "target ms", "p50 vs target"], rows))
    print(f"\nRSS before the timed calls {rss0:.1f} MB, after them + 30 more rounds {rss1:.1f} MB "
          f"(Δ {rss1 - rss0:+.1f} MB)")


async def _ready(rt):  # StoreDataLayer takes an async runtime getter, like ui.chat.runtime
    return rt


if __name__ == "__main__":
    asyncio.run(main())
