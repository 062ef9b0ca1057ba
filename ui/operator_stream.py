"""Pending approvals pushed to the console as Server-Sent Events (no polling by the page); the feed itself
is ui/operator_feed.py. A stream lasts at most MAX_AGE_S: the browser's EventSource reconnects by itself,
and every reconnect passes the login, revocation, role and origin checks again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from ui import chat
from ui.operator_auth import Operator, is_operator, require_same_origin
from ui.operator_feed import pending_events, pending_items

router = APIRouter()
MAX_STREAMS = 64  # open streams in this process: each holds a connection and a subscription
_open_streams = 0


async def pending_snapshot() -> list[dict[str, Any]]:
    rt = await chat.runtime()
    return await pending_items(rt.db, rt.agent.workspace_for)


@router.get("/api/pending/stream")
async def pending_stream(request: Request, who: Operator) -> StreamingResponse:
    require_same_origin(request)
    if _open_streams >= MAX_STREAMS:
        raise HTTPException(status_code=429, detail="too many open console streams")

    async def counted() -> AsyncIterator[str]:
        global _open_streams
        _open_streams += 1
        try:
            async for chunk in pending_events(pending_snapshot, lambda: is_operator(who)):
                yield chunk
        finally:
            _open_streams -= 1

    return StreamingResponse(counted(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/api/pending")
async def pending(who: Operator) -> list[dict[str, Any]]:
    """The same list once, for scripts (the page uses the stream)."""
    return await pending_snapshot()
