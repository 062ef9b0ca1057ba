"""Adjustments to chainlit internals that cost every turn; each says why it is safe here.

`cl.Message` and `cl.Step` constructors call a blocking `time.sleep(0.001)` (chainlit 2.x; added so that
steps made in a row get distinct `createdAt` for data layers that order by it). On the event loop that is
~1-2 ms of every session frozen per constructor, six per tool turn (bench/concurrency_server.py). Our
data layer orders a thread's steps by their write order (store/steps.py, `seq`), never by `createdAt`,
and the browser keeps the order it receives, so the pause buys nothing here.
"""

from __future__ import annotations

import importlib
import time
import types
from typing import Any


class _TimeWithoutSleep(types.SimpleNamespace):
    """The `time` module as those two chainlit modules see it: everything but `sleep` passes through."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None


def drop_constructor_sleep() -> None:
    # By module path: the package attribute `chainlit.step` is the @step decorator, not the module.
    for name in ("chainlit.message", "chainlit.step"):
        importlib.import_module(name).time = _TimeWithoutSleep()


async def disconnect_sockets_of(user: str) -> int:
    """Close every open chat socket of `user`: after logout, a socket opened earlier with a copied cookie
    must not keep chatting (the handshake checks revocation; a live socket is never asked again).

    The one place that reads chainlit's socket registry (`chainlit.session.ws_sessions_sid`, 2.12);
    tests/test_chainlit_compat.py fails loudly if an upgrade moves it."""
    from chainlit.server import sio
    from chainlit.session import ws_sessions_sid

    sids = [sid for sid, session in list(ws_sessions_sid.items())
            if session.user is not None and session.user.identifier == user]
    for sid in sids:
        await sio.disconnect(sid)
    return len(sids)
