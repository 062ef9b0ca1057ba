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
