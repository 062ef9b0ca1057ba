"""Per-user storage limits the store enforces on every write path, before anything is written.

Set once from the settings (ui/runtime.py); None means no limit (tests and tools that build a store)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoreLimits:
    max_threads_per_user: int | None = None  # live (not deleted) threads one user may hold
    max_message_chars: int | None = None  # a user's message as chainlit persists it (a `user_message` step)
    max_step_chars: int | None = None  # any other step (assistant text, tool step, card): what a socket client
    # could forge with another type


class LimitExceeded(Exception):
    """A write refused by a limit; the message is for the user, and nothing was written."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "threads" | "message_chars" | "step_chars"
        self.message = message
