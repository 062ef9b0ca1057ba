"""Pending approvals pushed to the console as Server-Sent Events: no polling by the page.

"A row changed, then a wake-up": the approval store's writes notify store/changes.py; this stream wakes,
reads the pending list again and sends it when it differs from what it sent last. It also re-reads every
RECHECK_S on its own, so a decision made by another process (a second server, the CLI) still arrives
while nothing wakes this one. A stream lasts at most MAX_AGE_S: the browser's EventSource reconnects by
itself, and every reconnect passes the login, revocation, role and origin checks again; between wake-ups
the role is checked again too, so a demoted operator stops receiving approvals within RECHECK_S.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from store import approvals as approval_store
from store import changes
from store.values import Approval
from ui import cards, chat
from ui.operator_auth import Operator, is_operator, require_same_origin

router = APIRouter()
RECHECK_S = 5.0
KEEPALIVE_S = 20.0
MAX_AGE_S = 600.0
MAX_STREAMS = 64  # open streams in this process: each holds a connection and a subscription
_open_streams = 0


def approval_json(a: Approval) -> dict[str, Any]:
    return {"id": a.id, "user": a.owner, "thread": a.thread_id, "tool": a.tool, "args": a.args, "risk": a.risk,
            "untrusted_sources": list(a.untrusted_sources), "route": a.route, "status": a.status,
            "requested_at": a.requested_at, "expires_at": a.expires_at,
            "seconds_left": max(0, a.expires_at - time.time()),
            "decided_at": a.decided_at, "decided_by": a.decided_by, "reason": a.reason,
            "thread_deleted": a.thread_deleted}


async def pending_snapshot() -> list[dict[str, Any]]:
    rt = await chat.runtime()
    items = []
    for a in await approval_store.pending_approvals(rt.db, owner=None):
        item = approval_json(a)
        if a.tool == "write_file":  # what will change, not just what was asked
            item["diff"] = cards.write_diff(rt.agent.workspace_for(a.owner), a.args)
        items.append(item)
    return items


def _sameness(items: list[dict[str, Any]]) -> str:
    """What must change for the page to need a new list (the countdown runs in the page)."""
    return json.dumps([{k: v for k, v in i.items() if k != "seconds_left"} for i in items], sort_keys=True)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=True)}\n\n"  # ASCII JSON: one line, no CR/LF


async def pending_events(snapshot: Callable[[], Awaitable[list[dict[str, Any]]]],
                         allowed: Callable[[], Awaitable[bool]], *, recheck_s: float = RECHECK_S,
                         keepalive_s: float = KEEPALIVE_S, max_age_s: float = MAX_AGE_S) -> AsyncIterator[str]:
    """The event stream: the list at once, then again after every change; ends after `max_age_s`."""
    with changes.notifier().subscribe(changes.APPROVALS) as wake:
        yield "retry: 2000\n\n"  # reconnect after 2 s when the stream ends or breaks
        started = last_sent = time.monotonic()
        sent: str | None = None
        while True:
            items = await snapshot()
            now = time.monotonic()
            if (key := _sameness(items)) != sent:
                yield sse("pending", items)
                sent, last_sent = key, now
            elif now - last_sent >= keepalive_s:
                yield ": keepalive\n\n"  # a comment: keeps proxies from closing an idle stream
                last_sent = now
            if now - started >= max_age_s:
                return
            await wake.wait(recheck_s)
            if not await allowed():
                yield sse("denied", "operators only")
                return


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
