"""Wake-ups between processes: PostgreSQL LISTEN on one dedicated connection. Only a hint (delivered on
commit, folded, lost while the connection is down): every waiter also polls, so a lost wake-up costs at
most one poll interval.

Two channels: `tollgate_wakeup` (a due resume, store/cluster.py) and `tollgate_changes` (store/changes.py's
topics, e.g. "the approvals changed": the operator console's push). `ChangeRelay` sends this process's
change topics out, after the write committed; the listener hands those of other processes to the local
notifier with relay=False, so they are not sent out again. Its own come back too and are skipped by origin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy import make_url, text

from store import changes
from store.background import cancel_and_wait
from store.cluster import WAKEUP_CHANNEL
from store.db import Database

log = logging.getLogger("tollgate.cluster")
CHANGES_CHANNEL = "tollgate_changes"  # payload "<origin process id>:<topic>"


def libpq_url(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener:
    def __init__(self, url: str, on_wakeup: Callable[[str], None], *, origin: str | None = None) -> None:
        """`origin`: this process's id; with it, change topics of other processes reach the local notifier."""
        self._url = libpq_url(url)
        self._on_wakeup = on_wakeup
        self._origin = origin
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever())

    async def _listen_forever(self) -> None:
        import psycopg  # only with a PostgreSQL database

        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {WAKEUP_CHANNEL}")
                    if self._origin is not None:
                        await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    self.connected.set()
                    backoff = 0.1
                    self._on_wakeup("")  # anything sent while we were not listening: look once
                    if self._origin is not None:
                        changes.notify(changes.APPROVALS, relay=False)
                    async for note in conn.notifies():
                        if note.channel == CHANGES_CHANNEL:
                            self._on_change(note.payload)
                        else:
                            self._on_wakeup(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("LISTEN connection lost; polling until it is back", exc_info=True)
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _on_change(self, payload: str) -> None:
        origin, _, topic = payload.partition(":")
        if origin != self._origin and topic:
            changes.notify(topic, relay=False)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


class ChangeRelay:
    """Sends this process's change topics to the others (`pg_notify` on CHANGES_CHANNEL), from a task of its
    own: `send` is the notifier's relay and must not wait on the database. Topics that pile up while a send
    is in flight go out once (a wake-up carries no data, so folding them loses nothing)."""

    def __init__(self, db: Database, *, origin: str) -> None:
        self._db = db
        self._origin = origin
        self._loop = asyncio.get_running_loop()
        self._due: set[str] = set()
        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._send_forever())
        changes.notifier().add_relay(self.send)

    def send(self, topic: str) -> None:
        """The relay: may be called from any thread (a write finishing on a worker thread)."""
        self._loop.call_soon_threadsafe(self._queue, topic)

    def _queue(self, topic: str) -> None:
        self._due.add(topic)
        self._ready.set()

    async def _send_due(self) -> None:
        self._ready.clear()
        topics, self._due = sorted(self._due), set()
        if topics:
            async with self._db.read() as conn:
                for topic in topics:
                    await conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                                       {"channel": CHANGES_CHANNEL, "payload": f"{self._origin}:{topic}"})
                await conn.commit()

    async def _send_forever(self) -> None:
        while True:
            await self._ready.wait()
            try:
                await self._send_due()
            except Exception:  # a hint: the other processes' consoles still re-read on their slow timer
                log.warning("could not relay a change to the other processes", exc_info=True)

    async def close(self) -> None:
        """Stop relaying; topics already queued still go out."""
        changes.notifier().remove_relay(self.send)
        await cancel_and_wait(self._task)
        with contextlib.suppress(Exception):
            await self._send_due()
