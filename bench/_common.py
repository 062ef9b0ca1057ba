"""Shared helpers for the benchmarks: machine info, percentiles, markdown tables, an in-process Agent."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def machine() -> str:
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    load = os.getloadavg()
    return (f"nproc={os.cpu_count()}, mem={mem_kb / 1024 / 1024:.1f} GiB, python {platform.python_version()}, "
            f"loadavg {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} — machine shared with concurrent test runs")


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class NullSink:
    async def __call__(self, event: Any) -> None:
        return None


@dataclass
class Bench:
    agent: Any
    server: Any
    client: Any
    db: Any
    settings: Any

    async def close(self) -> None:
        await self.agent.close()
        await self.client.close()
        self.server.stop()
        await self.db.close()


async def make_bench(data_dir: Path, *, brain: Any, demo_settings: Any, registry: Any = None,
                     users: Sequence[str] = ("alice",), **overrides: Any) -> Bench:
    """An Agent against the demo model server over real HTTP, like tests/conftest.py's make_harness."""
    import anthropic

    from agent.budget import Budget
    from agent.config import Settings
    from agent.loop import Agent, AgentDeps
    from agent.model import ModelClient
    from agent.pricing import PriceTable
    from fakeclaude import DemoModelServer
    from store import users as user_store
    from store.db import Database
    from tools import default_registry

    settings = Settings(data_dir=data_dir, approval_timeout_s=30, **overrides)
    db = Database.for_data_dir(settings.data_dir)
    await db.create_schema()
    for u in users:
        await user_store.add_user(db, name=u, password="orchard-apple-7")
    server = DemoModelServer(brain=brain, settings=demo_settings)
    client = anthropic.AsyncAnthropic(api_key="bench", base_url=server.start(), max_retries=0)
    deps = AgentDeps(db=db, settings=settings, model=ModelClient(client), registry=registry or default_registry(),
                     budget=Budget(db, PriceTable.load(), settings))
    return Bench(agent=Agent(deps), server=server, client=client, db=db, settings=settings)
