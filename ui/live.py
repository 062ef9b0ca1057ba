"""Which chat sessions are watching which threads, so a decision made elsewhere (the operator
console) continues the user's turn live in their browser."""

from __future__ import annotations

import asyncio
import contextvars
import logging

from agent.events import EventSink
from ui.runtime import Runtime, unwatched

log = logging.getLogger("tollgate")
_watchers: dict[str, tuple[contextvars.Context, EventSink]] = {}
MAX_WATCHED = 2_000
_tasks: set[asyncio.Task[object]] = set()  # owned: kept until done so none is garbage-collected mid-run


def remember(thread_id: str, emit: EventSink) -> None:
    """Call from a chat handler: later events of this thread render into this session."""
    _watchers.pop(thread_id, None)
    _watchers[thread_id] = (contextvars.copy_context(), emit)
    while len(_watchers) > MAX_WATCHED:  # keep the most recent: old entries pin closed sessions in memory
        del _watchers[next(iter(_watchers))]


def continue_thread(rt: Runtime, *, owner: str, thread_id: str) -> asyncio.Task[object]:
    """Resume a suspended thread in the background, rendering into its chat if one is watching."""
    ctx, emit = _watchers.get(thread_id, (contextvars.copy_context(), unwatched))
    coro = rt.agent.resume(owner=owner, thread_id=thread_id, emit=emit)
    task: asyncio.Task[object] = asyncio.create_task(coro, context=ctx)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task
