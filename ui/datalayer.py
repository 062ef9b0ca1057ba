"""Chainlit's data layer over the project's own store: sidebar history, thread view, resume.

One schema, created by the project (no chainlit tables, so no stale-schema trap). Writes that fail
raise: chainlit would only log a warning, so we also tell the user in the chat that the history
could not be saved. Every call is scoped by the user chainlit authenticated, on top of chainlit's
own author checks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import chainlit as cl
from chainlit.context import context
from chainlit.data.base import BaseDataLayer
from chainlit.step import StepDict
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadDict, ThreadFilter
from chainlit.user import PersistedUser, User

from store import steps as step_store
from store import threads as thread_store
from store import users as user_store
from store.db import Database
from store.limits import LimitExceeded
from store.threads import NotFound
from ui.client_steps import from_client
from ui.placement import order_key
from ui.runtime import Runtime
from ui.safe_text import reveal_line

log = logging.getLogger("tollgate.history")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def _session_user() -> str | None:
    try:
        user = context.session.user
    except Exception:  # no chainlit context (REST calls without a session)
        return None
    return user.identifier if user else None


class StoreDataLayer(BaseDataLayer):
    def __init__(self, runtime: Callable[[], Awaitable[Runtime]]) -> None:
        self._runtime = runtime  # chainlit builds the layer synchronously; the store opens on first use
        self._step_queues: dict[str, _StepQueue] = {}
        self.writes_skipped = 0  # writes of a step made moot by a newer one already queued (bench/, tests)

    @asynccontextmanager
    async def _in_order(self, step_id: str) -> AsyncIterator[bool]:
        """Chainlit writes each send and update of a step as its own task: without this, an answer's final
        send could land after the update that adds its usage footer and erase it. asyncio.Lock is FIFO and
        a task takes it before its first await, so writes of one step land in the order they were made.
        Yields whether this write is still the newest asked for: each carries the whole step (chainlit's
        `to_dict()`), so one with a newer write queued behind it need not be written at all."""
        queue = self._step_queues.setdefault(step_id, _StepQueue())
        queue.users += 1
        queue.asked += 1
        mine = queue.asked
        try:
            async with queue.lock:
                yield mine == queue.asked
        finally:
            queue.users -= 1
            if queue.users == 0:
                del self._step_queues[step_id]

    async def _db(self) -> Database:
        return (await self._runtime()).db

    # users: logins are created with the CLI; chainlit only looks them up
    async def get_user(self, identifier: str) -> PersistedUser | None:
        found = await user_store.get_user_since(await self._db(), name=identifier)
        if found is None:
            return None
        user, created = found
        return PersistedUser(id=user.name, identifier=user.name, createdAt=_iso(created),
                             metadata={"role": user.role})

    async def create_user(self, user: User) -> PersistedUser | None:
        return await self.get_user(user.identifier)

    # threads
    async def get_thread_author(self, thread_id: str) -> str:
        owner = await thread_store.owner_of(await self._db(), thread_id=thread_id)
        return owner or ""

    async def update_thread(self, thread_id: str, name: str | None = None, user_id: str | None = None,
                            metadata: dict[str, Any] | None = None, tags: list[str] | None = None) -> None:
        owner = _session_user() or user_id
        if owner is None:  # the REST rename: chainlit has checked that the caller is the author
            owner = await thread_store.owner_of(await self._db(), thread_id=thread_id)
            if owner is None:
                return
        if not await self._ensure_thread(owner, thread_id):
            return
        if name:
            await thread_store.rename_thread(await self._db(), owner=owner, thread_id=thread_id, title=name)

    async def _ensure_thread(self, owner: str, thread_id: str) -> bool:
        """Create on first use; False (and nothing written) if another user owns it, its owner deleted it, or
        the owner is at the thread limit (on_message tells the user that one)."""
        try:
            if await thread_store.ensure_thread(await self._db(), owner=owner, thread_id=thread_id):
                return True
        except LimitExceeded as e:
            log.warning("refused a new thread for %s: %s", owner, e.message)
            return False
        log.warning("refused a write by %s to a thread owned by someone else or deleted", owner)
        return False

    async def delete_thread(self, thread_id: str) -> None:
        """The owner's delete hides the thread; its approvals, tool calls and model calls stay for operators."""
        owner = await thread_store.owner_of(await self._db(), thread_id=thread_id)
        session_user = _session_user()
        if owner is None or (session_user is not None and session_user != owner):
            return
        await thread_store.delete_thread(await self._db(), owner=owner, thread_id=thread_id)

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter) -> PaginatedResponse[ThreadDict]:
        if not filters.userId:  # chainlit sets it from the authenticated user; without it, nothing
            return PaginatedResponse(pageInfo=PageInfo(hasNextPage=False, startCursor=None, endCursor=None), data=[])
        before = float(pagination.cursor) if pagination.cursor else None
        rows = await thread_store.list_threads(await self._db(), owner=filters.userId, limit=pagination.first + 1,
                                               before=before, search=filters.search)
        page = rows[: pagination.first]
        data: list[ThreadDict] = [
            ThreadDict(id=t.id, createdAt=_iso(t.updated_at), name=_title(t.title), userId=t.owner,
                       userIdentifier=t.owner, tags=[], metadata={}, steps=[], elements=[]) for t in page]
        return PaginatedResponse(
            pageInfo=PageInfo(hasNextPage=len(rows) > pagination.first,
                              startCursor=str(page[0].updated_at) if page else None,
                              endCursor=str(page[-1].updated_at) if page else None),
            data=data)

    async def get_thread(self, thread_id: str) -> ThreadDict | None:
        owner = await thread_store.owner_of(await self._db(), thread_id=thread_id)
        session_user = _session_user()
        if owner is None or (session_user is not None and session_user != owner):
            return None
        t = await thread_store.get_thread(await self._db(), owner=owner, thread_id=thread_id)
        steps = await step_store.list_steps(await self._db(), owner=owner, thread_id=thread_id)
        return ThreadDict(id=t.id, createdAt=_iso(t.created_at), name=_title(t.title), userId=owner,
                          userIdentifier=owner, tags=[], metadata={}, steps=[_step_dict(s) for s in steps],
                          elements=[])

    # steps: what the chat showed
    async def create_step(self, step_dict: Any) -> None:
        await self._write_step(step_dict)

    async def update_step(self, step_dict: Any) -> None:
        await self._write_step(step_dict)

    async def _write_step(self, s: dict[str, Any]) -> None:
        owner, thread_id = _session_user(), s.get("threadId")
        if owner is None or not thread_id or not isinstance(s.get("id"), str):
            return
        if s.get("type") == "run" and s.get("name") == "on_chat_start":
            return  # chainlit wraps on_chat_start in a step: storing it would create a thread per page opened
        async with self._in_order(s["id"]) as newest:
            if not newest:
                self.writes_skipped += 1
                return
            await self._write_step_now(owner, thread_id, s)

    async def _write_step_now(self, owner: str, thread_id: str, s: dict[str, Any]) -> None:
        values = {"name": s.get("name") or "", "type": s.get("type") or "", "parent_id": s.get("parentId"),
                  "input": _text(s.get("input")), "output": _text(s.get("output")),
                  "is_error": bool(s.get("isError")), "created_at": s.get("createdAt"), "start": s.get("start"),
                  "end": s.get("end"), "show_input": _text(s.get("showInput")) or None,
                  "language": s.get("language"), "metadata_json": json.dumps(s.get("metadata") or {})}
        try:
            if not await step_store.upsert_step(await self._db(), owner=owner, thread_id=thread_id, step_id=s["id"],
                                                values=values, from_client=from_client(s["id"]),
                                                at=order_key(s.get("createdAt"), time.time())):
                log.warning("refused a write by %s to a thread owned by someone else or deleted", owner)
        except LimitExceeded as e:  # nothing was stored; the user is told why (threads: on_message tells)
            log.warning("refused a step by %s: %s", owner, e.message)
            if e.kind in ("message_chars", "step_chars"):
                await cl.ErrorMessage(content=e.message).send()
        except Exception:
            log.exception("history write failed for thread %s", thread_id)
            await cl.ErrorMessage(content="Could not save this step to your history (see the server log).").send()
            raise

    async def delete_step(self, step_id: str) -> None:
        owner = _session_user()
        if owner is not None:
            await step_store.delete_step(await self._db(), owner=owner, step_id=step_id)

    # not offered: elements (uploads are off), feedback, favorites
    async def create_element(self, element: Any) -> None:
        return None

    async def get_element(self, thread_id: str, element_id: str) -> Any:
        return None

    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        return None

    async def upsert_feedback(self, feedback: Feedback) -> str:
        return ""

    async def delete_feedback(self, feedback_id: str) -> bool:
        return False

    async def build_debug_url(self) -> str:
        return ""

    async def get_favorite_steps(self, user_id: str) -> list[StepDict]:
        return []

    async def set_step_favorite(self, step_dict: StepDict, favorite: bool) -> StepDict:
        return step_dict  # favourites are not kept: the step is returned as it was

    async def close(self) -> None:
        return None


@dataclass
class _StepQueue:
    """The writes of one step waiting their turn."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    asked: int = 0  # writes asked for so far: the last one asked is the newest


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _title(title: str | None) -> str:
    """A thread title (the first message, or a rename) is one line of text: nothing hidden, nothing reordered."""
    return reveal_line(title) if title else "New chat"


def _step_dict(s: dict[str, Any]) -> StepDict:
    d: StepDict = {"id": s["id"], "threadId": s["thread_id"], "parentId": s["parent_id"], "name": s["name"],
                   "type": s["type"], "input": s["input"], "output": s["output"], "isError": s["is_error"],
                   "createdAt": s["created_at"], "start": s["start"], "end": s["end"],
                   "metadata": s["metadata"], "language": s["language"]}
    if s["show_input"]:
        d["showInput"] = s["show_input"] if s["show_input"] not in ("true", "false") else s["show_input"] == "true"
    return d


__all__ = ["NotFound", "StoreDataLayer"]
