"""Stopping a background task: cancel it and wait until it has ended.

In the lowest layer because every layer keeps such tasks (heartbeats, relays, pollers, stream timers). The
cancellation the task ends with is swallowed, but not one aimed at the caller while it waits: `suppress(
CancelledError)` around the await would swallow both, and a shutdown that was itself cancelled would go on."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel every task given (None is skipped) and wait for all of them to end."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    current = asyncio.current_task()
    for task in live:
        # Counted before the wait: a caller already being cancelled (cleaning up after a stop) still stops its
        # tasks; only a cancellation that arrives during the wait is the caller's to receive.
        before = current.cancelling() if current is not None else 0
        try:
            await task
        except asyncio.CancelledError:
            if current is not None and current.cancelling() > before:
                raise
