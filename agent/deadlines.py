"""Server-side deadlines of suspended turns, as rows: at the earliest pending expiry the thread is
resumed, so the expired approvals become rejected tool_results and the turn goes on (or ends) without
anyone present. A row is claimed once across processes (store/cluster.py) and survives a restart, so
nothing is re-armed in memory and nothing can fire twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from store import cluster as cluster_store
from store.db import Database


class Deadlines:
    def __init__(self, db: Database, wake: Callable[[], None] = lambda: None) -> None:
        self._db = db
        self._wake = wake  # pokes this process's dispatcher (agent/wakeups.py): a new row may be due sooner

    async def arm(self, *, owner: str, thread_id: str, at: float, **_ui: Any) -> None:
        """Resume the thread at `at` (or earlier if something else asked for that)."""
        await cluster_store.request_resume(self._db, thread_id=thread_id, owner=owner, at=at, now=time.time())
        self._wake()

    async def continue_now(self, *, owner: str, thread_id: str) -> None:
        """A decision taken here for a thread whose browser may be on another process: resume it where
        that browser is (row changed, then a wake-up)."""
        await self.arm(owner=owner, thread_id=thread_id, at=time.time())

    async def ensure(self, *, owner: str, thread_id: str, at: float) -> bool:
        return await cluster_store.ensure_resume(self._db, thread_id=thread_id, owner=owner, at=at)

    async def cancel(self, thread_id: str) -> None:
        """The thread moves on (a decision, a new message): its pending resume is no longer needed."""
        await cluster_store.cancel_resume(self._db, thread_id=thread_id)
