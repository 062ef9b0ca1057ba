"""Budget race on PostgreSQL across 2 OS processes: N sessions of one user (N/2 per process, each process
with its own engine) reserve at the same moment against a daily cap with room for 7 worst cases.
Overspend = what is held beyond the cap (target 0). Also: admitted vs what fitted, and the wall time.

    .venv/bin/python bench/cluster_budget_race.py [N ...]      (default: 10 50 200)
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine, table  # noqa: E402
from store import usage as usage_store  # noqa: E402
from store import users as user_store  # noqa: E402
from store.db import Database  # noqa: E402
from tests.cluster import Postgres  # noqa: E402

AMOUNT, FITS = 1_000_000, 7
CAP = AMOUNT * FITS + AMOUNT // 2


async def level(pg: Postgres, n: int) -> list[object]:
    name = f"race{n}"
    import psycopg

    with psycopg.connect(pg.libpq, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = pg.url.rsplit("/", 1)[0] + "/" + name
    db = Database(url)
    await db.upgrade_schema()
    await user_store.add_user(db, name="alice", password="orchard-apple-1")
    procs = [subprocess.Popen([sys.executable, "-m", "tests.cluster", "race", url, "alice", str(n // 2), str(AMOUNT),
                               str(CAP)], cwd=ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
             for _ in range(2)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    admitted = [int(p.communicate(timeout=600)[0].strip()) for p in procs]
    wall = time.perf_counter() - t0
    held = await usage_store.spent(db, scope="user_day", user="alice")
    await db.close()
    return [n, f"{admitted[0]} + {admitted[1]}", FITS, f"{max(held - CAP, 0) / 1e7:.2f}", f"{wall:.2f}"]


async def main() -> None:
    levels = [int(a) for a in sys.argv[1:]] or [10, 50, 200]
    pg = Postgres().start()
    try:
        rows = [await level(pg, n) for n in levels]
    finally:
        pg.stop(remove=True)
    print(machine())
    print(table(["sessions (2 processes)", "admitted", "fitted", "overspend ¢", "wall s (incl. process start)"],
                rows))


if __name__ == "__main__":
    asyncio.run(main())
