"""Batches text deltas so the browser never falls behind (chainlit #2604): at most one socket
update per interval (~20 a second), the first delta at once so time-to-first-token stays low."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from store.background import cancel_and_wait


class DeltaBatcher:
    def __init__(self, send: Callable[[str], Awaitable[None]], interval_s: float = 0.05) -> None:
        self._send = send
        self._interval = interval_s
        self._buffer: list[str] = []
        self._last = 0.0
        self._timer: asyncio.Task[None] | None = None
        self.sends = 0

    async def add(self, text: str) -> None:
        if not text:  # an empty delta (a block's start) is not the first one: the first text still goes at once
            return
        self._buffer.append(text)
        if time.monotonic() - self._last >= self._interval:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(max(self._interval - (time.monotonic() - self._last), 0))
        self._timer = None
        await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        chunk, self._buffer = "".join(self._buffer), []
        self._last = time.monotonic()
        self.sends += 1
        await self._send(chunk)

    async def close(self) -> None:
        """Flush what is left and stop the timer; safe to call twice."""
        await cancel_and_wait(self._timer)
        self._timer = None
        await self.flush()
