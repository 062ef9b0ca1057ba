"""Which chat sessions are watching which threads, so a decision made elsewhere (the operator console,
on this process or another) continues the user's turn live in their browser.

Here: the chat's sink, in the agent's registry (agent/wakeups.py). In the database: that this process
watches the thread (store/cluster.py), so a decision taken on another process is resumed here."""

from __future__ import annotations

import asyncio
import logging
import time

from agent.events import EventSink
from store import cluster as cluster_store
from ui.history import ChatHistory
from ui.runtime import Runtime

log = logging.getLogger("tollgate")
_runtime: Runtime | None = None
_tasks: set[asyncio.Task[None]] = set()  # owned: kept until done so none is garbage-collected mid-run


def attach(rt: Runtime) -> None:
    global _runtime
    _runtime = rt
    # The agent keeps streaming, cut and stopped answers in the chat's history itself (agent/partial.py).
    rt.agent.deps.history = ChatHistory(rt.db)


def remember(thread_id: str, emit: EventSink) -> None:
    """Call from a chat handler: later events of this thread render into this session."""
    rt = _runtime
    if rt is None:
        return
    rt.agent.sinks.remember(thread_id, emit)
    task = asyncio.create_task(_watch(rt, thread_id))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _watch(rt: Runtime, thread_id: str) -> None:
    try:
        await cluster_store.watch(rt.db, thread_id=thread_id, process_id=rt.agent.member.id, now=time.time())
    except Exception:  # a resume then runs wherever it is claimed (unwatched): slower to show, never lost
        log.warning("could not record that this process watches thread %s", thread_id, exc_info=True)

