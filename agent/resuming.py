"""Moving a suspended thread on: decisions, deadlines and restarts wake it where its chat renders.

Several processes may share the database (README "Past one machine"). A decision is a row, then a wake-up
(agent/decide.py); deadlines and decisions taken elsewhere are due-resume rows run by this process's
dispatcher (agent/wakeups.py), into the chat that watches the thread here (its sink), else unwatched."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from agent.approvals import Denied
from agent.cluster import Membership
from agent.deadlines import Deadlines
from agent.decide import Decisions
from agent.events import EventSink
from agent.wakeups import ResumeDispatcher, Sinks
from store import approvals as approval_store
from store import cluster as cluster_store
from store.db import Database

EXPIRED = "no decision before the deadline"
Resume = Callable[[str, str, EventSink], Awaitable[object]]  # (owner, thread_id, emit): the agent's resume


class ThreadWaking:
    def __init__(self, db: Database, member: Membership, resume: Resume) -> None:
        self._db, self._member, self._resume = db, member, resume
        self.sinks = Sinks()
        self.dispatcher = ResumeDispatcher(member, self._resume_due)
        self.deadlines = Deadlines(db, wake=self.dispatcher.poke)
        # The one way to decide: a decision is a row, then a wake-up (a due resume), so the process holding
        # the thread's browser moves it on, whichever process took the decision.
        self.decisions = Decisions(db, self._wake_via_row)
        self._waking: set[asyncio.Task[object]] = set()

    @property
    def waking(self) -> int:
        """Wake-ups started here and still running (tests: a refused decision starts none)."""
        return len(self._waking)

    def _wake_via_row(self, owner: str, thread_id: str) -> asyncio.Task[object]:
        """Decisions' wake-up. When the thread's browser is on another live process: a due resume row now,
        which that process's dispatcher claims once and resumes there. Otherwise the thread moves on here
        (rendering into the chat that watches it here, if any), under its lease like every other turn."""

        async def wake() -> object:
            watcher = await cluster_store.watcher_of(self._db, thread_id=thread_id,
                                                     alive_since=self._member.alive_since(time.time()))
            if watcher is not None and watcher != self._member.id:
                await self.deadlines.continue_now(owner=owner, thread_id=thread_id)
                return None
            return await self.sinks.run(thread_id, lambda emit: self._resume(owner, thread_id, emit))

        task: asyncio.Task[object] = asyncio.create_task(wake())
        self._waking.add(task)
        task.add_done_callback(self._waking.discard)
        return task

    async def _resume_due(self, owner: str, thread_id: str) -> None:
        """A due resume claimed here (a deadline, or a decision taken here or elsewhere): record the approvals
        whose deadline passed as expired through the one decision path, then move the thread on where its
        chat renders."""
        for a in await approval_store.pending_approvals(self._db, owner=owner, thread_id=thread_id):
            if a.expires_at <= time.time():
                await self.decisions.decide(approval_id=a.id, decision=Denied(EXPIRED), by="system",
                                            how="deadline", wake=False)
        await self.sinks.run(thread_id, lambda emit: self._resume(owner, thread_id, emit))

    async def recover(self) -> int:
        """At start-up: every pending approval's deadline has its row (enforced even if nobody returns); rows
        already there, perhaps claimed by a live peer, are left alone.

        Batches left open by a crash with nothing pending are closed when their thread next moves: a
        side effect whose approval was claimed reports "outcome unknown" and is never re-run."""
        earliest: dict[tuple[str, str], float] = {}
        for a in await approval_store.pending_approvals(self._db, owner=None):
            key = (a.owner, a.thread_id)
            earliest[key] = min(earliest.get(key, a.expires_at), a.expires_at)
        added = 0
        for (owner, thread_id), at in earliest.items():
            added += await self.deadlines.ensure(owner=owner, thread_id=thread_id, at=at)
        return added

    async def close(self) -> None:
        await self.dispatcher.close()
