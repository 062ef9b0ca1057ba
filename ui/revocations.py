"""Open chat sockets of a revoked session close, whichever process or command revoked it.

A socket is checked for revocation only at its handshake; after that it is never asked again. Logout in this
process closes the user's sockets at once (ui/chat.logout), but `tollgate users remove` and `set-password` run
in another process, and on a cluster a logout may land on a peer. So every process polls the cut-offs
(store/sessions.py) and closes its own sockets whose token was issued at or before one. The look-back window
re-reads recent cut-offs on every poll, so a cut-off written with a lagging clock is still seen; closing is
idempotent, and sockets opened with a newer token are kept.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time

from store import sessions as session_store
from store.background import cancel_and_wait
from store.db import Database
from ui import sessions
from ui.chainlit_compat import disconnect_sockets_of

log = logging.getLogger("tollgate")
LOOK_BACK_S = 60.0


def poll_interval_s() -> float:
    return float(os.environ.get("TOLLGATE_REVOCATION_POLL_S") or 2.0)


def _issued_by(cutoff: float, token: str | None) -> bool:
    """The socket's token was issued at or before `cutoff` (an unreadable token is closed: fail closed)."""
    claims = sessions.claims_of(token) if token else None
    return claims is None or sessions.issued_at(claims) <= cutoff


async def close_revoked_sockets(db: Database, *, now: float | None = None) -> int:
    closed = 0
    since = (time.time() if now is None else now) - LOOK_BACK_S
    for user, cutoff in await session_store.cutoffs_since(db, since=since):
        n = await disconnect_sockets_of(user, issued_before=functools.partial(_issued_by, cutoff))
        if n:
            log.info("closed %d open chat sockets of %s: their session was revoked", n, user)
        closed += n
    return closed


class RevocationWatch:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(poll_interval_s())
            try:
                await close_revoked_sockets(self._db)
            except Exception:  # a failed poll must not end the watch; the next one retries
                log.exception("could not check for revoked sessions")
