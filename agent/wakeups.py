"""Runs due resumes (deadlines, decisions taken on another process) in the right process, exactly once.

"Row changed, then a wake-up": whoever changes a thread writes a due_resumes row, and PostgreSQL's
NOTIFY (store/notify.py) or this process's own poke wakes every dispatcher; each also polls, because a
NOTIFY is only a hint. A dispatcher claims (one conditional UPDATE: one winner across processes) the due
rows of threads whose browser socket it holds, so the turn renders live there; a row nobody watches, or
whose watcher lets it sit past a grace period, is claimed by anyone and runs unwatched."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable

from agent.cluster import Membership
from agent.events import AgentEvent, EventSink
from store import cluster as cluster_store
from store.background import cancel_and_wait
from store.cluster import DueResume

log = logging.getLogger("tollgate.cluster")
OnDue = Callable[[str, str], Awaitable[object]]  # (owner, thread_id): resume it here
MAX_SINKS = 2_000


async def unwatched(event: AgentEvent) -> None:
    """Events of a turn that no chat here is watching: the store keeps the outcome."""


class Sinks:
    """Where a resume that runs in this process renders: the chat (its context and sink) that last showed
    the thread here. Most recent first out when full: old entries pin closed sessions in memory."""

    def __init__(self) -> None:
        self._by_thread: dict[str, tuple[contextvars.Context, EventSink]] = {}

    def remember(self, thread_id: str, emit: EventSink) -> None:
        self._by_thread.pop(thread_id, None)
        self._by_thread[thread_id] = (contextvars.copy_context(), emit)
        while len(self._by_thread) > MAX_SINKS:
            del self._by_thread[next(iter(self._by_thread))]

    def watches(self, thread_id: str) -> bool:
        return thread_id in self._by_thread

    async def run(self, thread_id: str, resume: Callable[[EventSink], Awaitable[object]]) -> object:
        ctx, emit = self._by_thread.get(thread_id, (contextvars.copy_context(), unwatched))
        # Run in the chat's context, so its events reach that chat session.
        return await asyncio.create_task(_awaited(resume(emit)), context=ctx)


async def _awaited(aw: Awaitable[object]) -> object:
    return await aw


class ResumeDispatcher:
    def __init__(self, member: Membership, on_due: OnDue) -> None:
        self._member = member
        self._db = member.db
        self._on_due = on_due
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._running: set[asyncio.Task[None]] = set()  # owned until done, so none is collected mid-run
        self.claimed = 0  # resumes this process ran (tests and logs)

    def poke(self, _payload: str = "") -> None:
        """Look for due resumes now (a row changed here, or a NOTIFY); starts the loop on first use."""
        self._wakeup.set()
        self.start()

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._loop())

    def _mine(self, due: DueResume, now: float) -> bool:
        if due.watcher is None or due.watcher == self._member.id:
            return True
        return now - due.due_at > self._member.timing.watcher_grace_s  # its watcher is alive but silent

    async def run_due(self) -> float:
        """Claim and start what is due for this process; returns how long to wait at most."""
        t = self._member.timing
        now = time.time()
        for due in await cluster_store.due_resumes(self._db, now=now, alive_since=self._member.alive_since(now)):
            if not self._mine(due, now):
                continue
            if await cluster_store.claim_resume(self._db, thread_id=due.thread_id, version=due.version,
                                                process_id=self._member.id, now=now, hold_s=t.claim_hold_s):
                task = asyncio.create_task(self._run(due))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
        nxt = await cluster_store.next_due_at(self._db)
        return t.poll_s if nxt is None else min(max(nxt - time.time(), 0.01), t.poll_s)

    async def _run(self, due: DueResume) -> None:
        self.claimed += 1
        try:
            await self._on_due(due.owner, due.thread_id)
        except Exception:  # e.g. the thread was deleted meanwhile: nothing left to resume
            log.warning("resume of thread %s failed", due.thread_id, exc_info=True)
        finally:
            await asyncio.shield(cluster_store.finish_resume(self._db, thread_id=due.thread_id,
                                                             version=due.version))

    async def _loop(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                wait = await self.run_due()
            except Exception:
                log.warning("looking for due resumes failed; retrying", exc_info=True)
                wait = self._member.timing.poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=wait)

    async def close(self) -> None:
        self._closed = True
        await cancel_and_wait(self._task, *self._running)
        self._task = None
