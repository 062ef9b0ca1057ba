"""Per-user storage limits the store enforces on every write path, before anything is written.

Set once from the settings (ui/runtime.py); None means no limit (tests and tools that build a store)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoreLimits:
    max_threads_per_user: int | None = None  # live (not deleted) threads one user may hold
    max_message_chars: int | None = None  # a step a client wrote (its message), and the message in the
    # `on_message` run step chainlit wraps around the handler
    max_step_chars: int | None = None  # any step, all its text fields together (answers, tool steps, cards)
    max_client_extra_chars: int = 1_000  # a client step's name, metadata and language together


class LimitExceeded(Exception):
    """A write refused by a limit; the message is for the user, and nothing was written."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "threads" | "message_chars" | "step_chars" | "run_input" (the run step: silent)
        self.message = message
