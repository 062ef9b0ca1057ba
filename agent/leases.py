"""One turn at a time per thread, across processes.

Why a lease row and not a PostgreSQL advisory lock: a session-level advisory lock pins one database
connection for the whole turn (a model call can stream for a minute, so 200 live turns need 200
connections) and it does not survive a transaction-pooling PgBouncer; a row works the same on SQLite and
PostgreSQL. The lease belongs to a process, not to a clock: it is free when released or when its holder's
heartbeat stopped (agent/cluster.py), so a long turn needs no renewal and a killed process's lease is
taken over once the sweeper's notion of "dead" holds. Every acquisition raises the epoch; the release
names the epoch, so a holder that was declared dead and came back cannot free its successor's lease, and
the turn's writes that matter name it too (store/fencing.py), so such a holder cannot run a tool or write
the thread's history any more either. Inside a process an asyncio.Lock queues the waiters, so only one of
them polls the row."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from store import cluster as cluster_store
from store.db import Database
from store.fencing import Fence

MAX_WAIT_STEP_S = 0.5


class ThreadTurns:
    def __init__(self, db: Database, holder: Callable[[], str], alive_since: Callable[[], float]) -> None:
        self._db = db
        self._holder = holder
        self._alive_since = alive_since
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._fences: dict[str, Fence] = {}  # the leases held by turns running here

    def _lock(self, thread_id: str) -> asyncio.Lock:
        lock = self._locks.get(thread_id)
        if lock is None:
            lock = self._locks[thread_id] = asyncio.Lock()
        return lock

    def is_running_here(self, thread_id: str) -> bool:
        lock = self._locks.get(thread_id)
        return lock is not None and lock.locked()

    def fence(self, thread_id: str) -> Fence | None:
        """The lease the turn running here for `thread_id` holds (None: no turn of it runs here)."""
        return self._fences.get(thread_id)

    async def is_running(self, thread_id: str) -> bool:
        """Here or in a live peer."""
        if self.is_running_here(thread_id):
            return True
        return await cluster_store.lease_holder(self._db, thread_id=thread_id,
                                                alive_since=self._alive_since()) is not None

    @asynccontextmanager
    async def hold(self, thread_id: str) -> AsyncIterator[Fence]:
        """Wait for the thread's turn (here, then across processes); yields the lease (its writes name it)."""
        async with self._lock(thread_id):
            holder, step = self._holder(), 0.02
            while True:
                epoch = await cluster_store.acquire_lease(self._db, thread_id=thread_id, holder=holder,
                                                          alive_since=self._alive_since(), now=time.time())
                if epoch is not None:
                    break
                await asyncio.sleep(step)  # a peer runs this thread's turn; its release is one row away
                step = min(step * 2, MAX_WAIT_STEP_S)
            fence = self._fences[thread_id] = Fence(thread_id, holder, epoch)
            try:
                yield fence
            finally:
                del self._fences[thread_id]
                await asyncio.shield(cluster_store.release_lease(self._db, thread_id=thread_id, holder=holder,
                                                                 epoch=epoch))
