"""Pending approvals pushed to the console as Server-Sent Events (no polling by the page); the feed itself
is ui/operator_feed.py. A stream lasts at most MAX_AGE_S: the browser's EventSource reconnects by itself,
and every reconnect passes the login, revocation, role and origin checks again.

Uvicorn (as ui/web.py runs it, with no graceful-shutdown timeout) waits for every open response before it
stops, and a stream never finishes by itself: an open console held SIGTERM for minutes. So the first
stream chains a handler in front of uvicorn's for SIGINT/SIGTERM that ends every stream, then lets
uvicorn's own handler run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from store import changes
from ui import chat
from ui.operator_auth import Operator, is_operator, require_same_origin
from ui.operator_feed import RECHECK_S, pending_events, pending_items

log = logging.getLogger("tollgate")
router = APIRouter()
MAX_STREAMS = 64  # open streams in this process: each holds a connection and a subscription
_open_streams = 0


def recheck_s() -> float:
    """How often a stream re-reads with no wake-up (`TOLLGATE_CONSOLE_RECHECK_S`, default 5 s): the fallback for
    a lost wake-up, and how soon a demoted operator's stream ends. Wake-ups cover writes of every process on
    PostgreSQL (store/notify.py), so a deployment may set it higher to spare the database."""
    raw = os.environ.get("TOLLGATE_CONSOLE_RECHECK_S")
    return float(raw) if raw else RECHECK_S


_closing: asyncio.Event | None = None


def closing_on_signals() -> asyncio.Event:
    """Set (and every stream woken) when the process is asked to stop. Installed once, from the loop."""
    global _closing
    if _closing is None:
        closing = _closing = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stop_streams() -> None:
            closing.set()
            changes.notify(changes.APPROVALS, relay=False)  # wake every stream now, not at its next re-check

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(stop_streams)  # not here: a signal handler must not take locks
                if callable(previous):
                    previous(signum, frame)
                elif previous == signal.SIG_DFL:
                    signal.signal(signum, signal.SIG_DFL)
                    signal.raise_signal(signum)

            try:
                signal.signal(sig, handler)
            except ValueError:  # not the main thread (an embedding server): streams end at MAX_AGE_S
                log.warning("console streams cannot watch for %s outside the main thread", sig.name)
    return _closing


async def pending_snapshot() -> list[dict[str, Any]]:
    rt = await chat.runtime()
    return await pending_items(rt.db, rt.agent.workspace_for)


@router.get("/api/pending/stream")
async def pending_stream(request: Request, who: Operator) -> StreamingResponse:
    require_same_origin(request)
    if _open_streams >= MAX_STREAMS:
        raise HTTPException(status_code=429, detail="too many open console streams")

    closing = closing_on_signals()

    async def counted() -> AsyncIterator[str]:
        global _open_streams
        _open_streams += 1
        try:
            async for chunk in pending_events(pending_snapshot, lambda: is_operator(who), recheck_s=recheck_s(),
                                              closing=closing):
                yield chunk
        finally:
            _open_streams -= 1

    return StreamingResponse(counted(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/api/pending")
async def pending(who: Operator) -> list[dict[str, Any]]:
    """The same list once, for scripts (the page uses the stream)."""
    return await pending_snapshot()
