"""This process as a member of a deployment that may run several app processes on one database.

It registers itself, beats a heartbeat, and sweeps peers whose heartbeat stopped: only the work of a
process known dead is closed (its reservations at their worst case, its leases, its watchers). On SQLite
only one process can use the file, so at start-up every earlier registration is a former self."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass

from store import cluster as cluster_store
from store import usage as usage_store
from store.background import cancel_and_wait
from store.db import Database

log = logging.getLogger("tollgate.cluster")


@dataclass(frozen=True)
class Timing:
    heartbeat_s: float = 2.0
    dead_after_s: float = 15.0  # several missed heartbeats: a GC pause or a busy loop is not death
    poll_s: float = 1.0  # due resumes are looked for at least this often (LISTEN/NOTIFY is only a hint)
    claim_hold_s: float = 120.0  # a claimed resume whose claimer stalls this long may be claimed again
    watcher_grace_s: float = 3.0  # a resume due this long and still unclaimed by its watcher: anyone runs it

    @classmethod
    def from_env(cls) -> Timing:
        def num(name: str, default: float) -> float:
            raw = os.environ.get(name)
            return float(raw) if raw else default

        return cls(heartbeat_s=num("TOLLGATE_HEARTBEAT_S", 2.0), dead_after_s=num("TOLLGATE_DEAD_AFTER_S", 15.0),
                   poll_s=num("TOLLGATE_WAKEUP_POLL_S", 1.0))


class Membership:
    def __init__(self, db: Database, timing: Timing | None = None) -> None:
        self.db = db
        self.timing = timing or Timing.from_env()
        self.id = secrets.token_hex(6)
        self._task: asyncio.Task[None] | None = None

    def alive_since(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.timing.dead_after_s

    async def start(self) -> None:
        if self.db.is_sqlite:
            released = await usage_store.release_stale_reservations(self.db)
            if released:
                log.warning("charged %d reservations left open by an earlier process at their worst case", released)
            await cluster_store.forget_all_processes(self.db)
        await cluster_store.register_process(self.db, process_id=self.id, host=socket.gethostname(),
                                             pid=os.getpid(), now=time.time())
        self.db.key_prefix = self.id + "."
        log.info("registered as process %s", self.id)
        await self.sweep()
        self._task = asyncio.create_task(self._beat())

    async def sweep(self) -> list[cluster_store.SweptProcess]:
        swept = []
        for dead in await cluster_store.dead_processes(self.db, alive_since=self.alive_since()):
            done = await cluster_store.sweep_process(self.db, process_id=dead, alive_since=self.alive_since())
            if done is not None:
                log.warning("process %s is dead: charged %d open reservations at their worst case, freed %d "
                            "leases", dead, done.reservations, done.leases)
                swept.append(done)
        return swept

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.timing.heartbeat_s)
            try:
                if not await cluster_store.heartbeat(self.db, process_id=self.id, now=time.time()):
                    # Declared dead by a peer (a stall longer than dead_after_s): our leases and reservations
                    # were closed. Come back under the same id; the turns in flight keep their fenced epochs.
                    log.error("process %s was declared dead by a peer; registering again", self.id)
                    await cluster_store.register_process(self.db, process_id=self.id, host=socket.gethostname(),
                                                         pid=os.getpid(), now=time.time())
                await self.sweep()
            except Exception:
                log.warning("heartbeat failed; retrying", exc_info=True)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        # A clean stop: nothing of ours is in flight any more, so our rows go now rather than at a sweep.
        with contextlib.suppress(Exception):
            await cluster_store.sweep_process(self.db, process_id=self.id)
