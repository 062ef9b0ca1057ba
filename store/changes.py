"""Wake-ups after a row changed: "something in <topic> changed, read it again", never the change itself.

A store write calls `notify(topic)` after its transaction committed; a reader that keeps a view fresh (the
operator console's pending approvals stream) holds a `Subscription` and re-reads the rows when woken. The
wake-up carries no data, so a lost or duplicated one costs a read, never a wrong view, and readers also
re-check on a slow timer for writes made by another process.

Cross-process delivery plugs in here without touching the writers: `add_relay(fn)` hands every local
notify to `fn` (e.g. a PostgreSQL `NOTIFY`), and a listener calls `notify(topic, relay=False)` for wake-ups
that arrived from elsewhere (e.g. a `LISTEN` callback), so they are not sent out again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

log = logging.getLogger("tollgate")

APPROVALS = "approvals"  # a row of the approvals table was inserted or changed status

Relay = Callable[[str], None]


class Subscription:
    """One reader's wake-up flag for one topic. Wake-ups that arrive while the reader is busy coalesce."""

    def __init__(self, topic: str, loop: asyncio.AbstractEventLoop) -> None:
        self.topic = topic
        self._loop = loop
        self._event = asyncio.Event()

    def _wake(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """True when woken by a notify, False when `timeout_s` passed first (time for the slow re-check)."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class ChangeNotifier:
    """In-process fan-out of wake-ups; thread-safe, so a write finishing on a worker thread may notify."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Subscription]] = {}
        self._relays: list[Relay] = []

    @contextmanager
    def subscribe(self, topic: str) -> Iterator[Subscription]:
        sub = Subscription(topic, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.setdefault(topic, set()).add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._subscribers.get(topic, set()).discard(sub)

    def subscribers(self, topic: str) -> int:
        with self._lock:
            return len(self._subscribers.get(topic, ()))

    def notify(self, topic: str, *, relay: bool = True) -> None:
        with self._lock:
            subs = list(self._subscribers.get(topic, ()))
            relays = list(self._relays) if relay else []
        for sub in subs:
            with suppress(RuntimeError):  # its loop is closed: the reader is gone
                sub._loop.call_soon_threadsafe(sub._wake)
        for fn in relays:
            try:
                fn(topic)
            except Exception:  # a broken relay must not fail the write that already committed
                log.exception("change relay failed for %s", topic)

    def add_relay(self, fn: Relay) -> None:
        with self._lock:
            self._relays.append(fn)

    def remove_relay(self, fn: Relay) -> None:
        with self._lock:
            if fn in self._relays:
                self._relays.remove(fn)


_notifier = ChangeNotifier()


def notifier() -> ChangeNotifier:
    """The process's notifier: the store's writers notify it, readers subscribe to it."""
    return _notifier


def notify(topic: str, *, relay: bool = True) -> None:
    _notifier.notify(topic, relay=relay)
