"""Brains decide what the fake answers. ScriptedBrain is for tests; the demo persona (fakeclaude.persona) for demos."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from .replies import Brain, Fault, Reply, TextBlock, ToolUseBlock

__all__ = [
    "Brain",
    "Fault",
    "Reply",
    "ScriptedBrain",
    "TextBlock",
    "ToolUseBlock",
]

Step = Reply | Callable[[dict[str, Any]], Reply]


class ScriptedBrain:
    """Answers with the given steps in order; a callable step is called with the request body.

    A call past the end raises AssertionError("script exhausted ..."), which the server turns into an
    HTTP 500 carrying that message (and `x-should-retry: false`, so the SDK does not hide it behind
    retries). Such calls are also counted in `overcalls` and make `assert_done()` fail.
    """

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps = list(steps)
        self._next = 0
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.overcalls = 0

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._steps) - self._next

    def respond(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._next >= len(self._steps):
                self.overcalls += 1
                raise AssertionError(
                    f"script exhausted: call {len(self.requests)} but the script has {len(self._steps)} steps"
                )
            step = self._steps[self._next]
            self._next += 1
        return step(request) if callable(step) else step

    def assert_done(self) -> None:
        with self._lock:
            left = len(self._steps) - self._next
            if left:
                raise AssertionError(f"script not finished: {left} of {len(self._steps)} steps unused")
            if self.overcalls:
                raise AssertionError(f"script exhausted: {self.overcalls} call(s) beyond the script")
