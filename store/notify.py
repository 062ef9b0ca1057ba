"""Wake-ups between processes: PostgreSQL LISTEN on one dedicated connection. Only a hint (delivered on
commit, folded, lost while the connection is down): every waiter also polls, so a lost wake-up costs at
most one poll interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy import make_url

from store.cluster import WAKEUP_CHANNEL

log = logging.getLogger("tollgate.cluster")


def libpq_url(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener:
    def __init__(self, url: str, on_wakeup: Callable[[str], None]) -> None:
        self._url = libpq_url(url)
        self._on_wakeup = on_wakeup
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
                    self.connected.set()
                    backoff = 0.1
                    self._on_wakeup("")  # anything sent while we were not listening: look once
                    async for note in conn.notifies():
                        self._on_wakeup(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("LISTEN connection lost; polling until it is back", exc_info=True)
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
