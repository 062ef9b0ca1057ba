"""An answer kept in the store while it streams, so a crash mid-stream loses at most one interval.

The first save happens once the stream has run for `interval_s` (short answers never write twice),
then at most once per interval, in the background: the stream never waits on the database. The row
is an incomplete assistant message (left out of the model's context); `finish` turns it into the
final message, or leaves it incomplete with what arrived when the call failed or was stopped.

The chat's history (what a reload shows) gets the same from here, not from whatever renders the stream: each
save, a cut or a stop is written to the `AnswerHistory` (the UI's store of what it showed, ui/history.py)
under the answer's id, which the renderer gives the message it streams; a complete answer then replaces the
kept one there too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from store import threads as thread_store
from store.db import Database
from store.fencing import Fence

log = logging.getLogger("tollgate.agent")


class AnswerHistory(Protocol):
    """Where the chat's history shows an answer. `complete`: the whole answer; else what had arrived, shown
    as cut. `started_at` (epoch seconds): when its first text arrived, its place in the history."""

    async def keep(self, *, owner: str, thread_id: str, answer_id: str, text: str, complete: bool,
                   started_at: float) -> None: ...


class PartialAnswer:
    def __init__(self, db: Database, *, owner: str, thread_id: str, interval_s: float,
                 on_kept: Callable[[str], Awaitable[None]], answer_id: str = "",
                 history: AnswerHistory | None = None, fence: Fence | None = None) -> None:
        self._db, self._owner, self._thread_id = db, owner, thread_id
        self._fence = fence  # the turn's lease: a former holder's answer is not stored (store/fencing.py)
        self._on_kept = on_kept
        self.answer_id, self._history = answer_id, history
        self._started_at: float | None = None
        self._shown = False  # the history holds a kept (cut) version that the final one must replace
        self._interval = interval_s
        self._text: list[str] = []
        self._saved_at = time.monotonic()
        self._saving: asyncio.Task[None] | None = None
        self.seq: int | None = None  # the stored row, once the first save has landed

    def add(self, delta: str) -> None:
        if self._started_at is None:
            self._started_at = time.time()
        self._text.append(delta)
        now = time.monotonic()
        if self._saving is None and now - self._saved_at >= self._interval:
            self._saved_at = now
            self._saving = asyncio.create_task(self._save("".join(self._text)))

    async def _save(self, text: str) -> None:
        if not text.strip():
            self._saving = None
            return
        try:
            self.seq = await thread_store.keep_partial(self._db, owner=self._owner, thread_id=self._thread_id,
                                                       text=text, seq=self.seq, fence=self._fence)
        except Exception:  # the final write still happens (and raises); only crash-durability is lost
            log.exception("could not keep the streaming answer of thread %s", self._thread_id)
        else:
            await self._show(text, complete=False)
            await self._on_kept(text)
        finally:
            self._saving = None

    async def settle(self) -> None:
        """Wait for a save in flight, so nothing lands after the message that follows."""
        if self._saving is not None:
            await asyncio.shield(self._saving)

    async def finish(self, content: list[dict[str, Any]], *, incomplete: bool = False) -> int:
        """Store the answer in place of the partial row if one was saved, else as a new message; its seq."""
        await self.settle()
        if self.seq is None:
            seq = await thread_store.append_message(self._db, owner=self._owner, thread_id=self._thread_id,
                                                    role="assistant", content=content, incomplete=incomplete,
                                                    fence=self._fence)
        else:
            seq = self.seq
            await thread_store.finish_message(self._db, owner=self._owner, thread_id=self._thread_id,
                                              seq=seq, content=content, incomplete=incomplete, fence=self._fence)
        if incomplete or self._shown:
            text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
            await self._show(text, complete=not incomplete)
        return seq

    async def _show(self, text: str, *, complete: bool) -> None:
        """Into the chat's history; a failure there is logged, never the turn's end (the store has it)."""
        if self._history is None or not self.answer_id or not text.strip():
            return
        try:
            await self._history.keep(owner=self._owner, thread_id=self._thread_id, answer_id=self.answer_id,
                                     text=text, complete=complete, started_at=self._started_at or time.time())
        except Exception:
            log.exception("could not keep the answer of thread %s in the chat's history", self._thread_id)
        else:
            self._shown = not complete

    async def keep_cut(self, text: str) -> None:
        """A cut answer (error, stop) stays in the history marked incomplete, out of the model's context."""
        if text.strip():
            await self.finish([{"type": "text", "text": text}], incomplete=True)
        else:
            await self.settle()
