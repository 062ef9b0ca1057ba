"""The pending-approvals feed behind the console's push stream (ui/operator_stream.py serves it).

"A row changed, then a wake-up": the approval store's writes notify store/changes.py; the feed wakes,
reads the pending list again and sends it when it differs from what it sent last. It also re-reads every
RECHECK_S on its own, so a decision made by another process (a second server, the CLI) still arrives
while nothing wakes this one. Between wake-ups it asks whether the reader may still read (an operator
demoted meanwhile stops receiving within RECHECK_S). Plain asyncio: no chainlit, testable on its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from store import approvals as approval_store
from store import changes
from store.db import Database
from store.values import Approval
from tools import Workspace
from ui import cards

RECHECK_S = 5.0
KEEPALIVE_S = 20.0
MAX_AGE_S = 600.0


def approval_json(a: Approval) -> dict[str, Any]:
    return {"id": a.id, "user": a.owner, "thread": a.thread_id, "tool": a.tool, "args": a.args, "risk": a.risk,
            "untrusted_sources": list(a.untrusted_sources), "route": a.route, "status": a.status,
            "requested_at": a.requested_at, "expires_at": a.expires_at,
            "seconds_left": max(0, a.expires_at - time.time()),
            "decided_at": a.decided_at, "decided_by": a.decided_by, "reason": a.reason,
            "thread_deleted": a.thread_deleted}


async def pending_items(db: Database, workspace_for: Callable[[str], Workspace]) -> list[dict[str, Any]]:
    """The operator's queue: every pending approval, oldest first, a write with its diff."""
    items = []
    for a in await approval_store.pending_approvals(db, owner=None):
        item = approval_json(a)
        if a.tool == "write_file":  # what will change, not just what was asked
            item["diff"] = cards.write_diff(workspace_for(a.owner), a.args)
        items.append(item)
    return items


def _sameness(items: list[dict[str, Any]]) -> str:
    """What must change for the page to need a new list (the countdown runs in the page)."""
    return json.dumps([{k: v for k, v in i.items() if k != "seconds_left"} for i in items], sort_keys=True)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=True)}\n\n"  # ASCII JSON: one line, no CR/LF


async def pending_events(snapshot: Callable[[], Awaitable[list[dict[str, Any]]]],
                         allowed: Callable[[], Awaitable[bool]], *, recheck_s: float = RECHECK_S,
                         keepalive_s: float = KEEPALIVE_S, max_age_s: float = MAX_AGE_S,
                         closing: asyncio.Event | None = None) -> AsyncIterator[str]:
    """The event stream: the list at once, then again after every change; ends after `max_age_s`, or when
    `closing` is set (the server is stopping: an open stream would hold its shutdown)."""
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
            if now - started >= max_age_s or (closing is not None and closing.is_set()):
                return
            await wake.wait(recheck_s)
            if closing is not None and closing.is_set():
                return
            if not await allowed():
                yield sse("denied", "operators only")
                return


