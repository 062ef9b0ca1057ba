"""Server-side deadlines of suspended turns: at the earliest pending expiry, resume the thread so the
expired approvals become rejected tool_results and the turn goes on (or ends) without anyone present."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent.events import EventSink

log = logging.getLogger("tollgate.agent")
Resume = Callable[..., Awaitable[Any]]  # Agent._at_deadline(owner=, thread_id=, emit=)


class Deadlines:
    def __init__(self, resume: Resume) -> None:
        self._resume = resume
        self._tasks: dict[str, asyncio.Task[None]] = {}  # one per suspended thread, owned here

    def cancel(self, thread_id: str) -> None:
        """The thread moves on (a decision, a new message): its timer is no longer needed. A timer that
        is itself resuming the thread is left to finish."""
        task = self._tasks.get(thread_id)
        if task is not None and task is not asyncio.current_task():
            del self._tasks[thread_id]
            task.cancel()

    def arm(self, *, owner: str, thread_id: str, at: float, emit: EventSink) -> None:
        self.cancel(thread_id)

        async def fire() -> None:
            await asyncio.sleep(max(at - time.time(), 0.0))
            try:
                await self._resume(owner=owner, thread_id=thread_id, emit=emit)
            except Exception:  # e.g. the thread was deleted meanwhile: nothing left to expire
                log.warning("deadline of thread %s could not be enforced", thread_id, exc_info=True)
            finally:
                if self._tasks.get(thread_id) is asyncio.current_task():
                    del self._tasks[thread_id]

        # The task inherits this context, so its events reach the same chat session.
        self._tasks[thread_id] = asyncio.create_task(fire())

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
