"""Where a step goes in the chat: its parent and its timestamp. Chainlit's browser appends a step to its
parent's children as it arrives, and the history (ui/datalayer.py) replays the stored steps in `createdAt`
order: so every step of a turn hangs under the same parent and carries a strictly increasing stamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chainlit.context import context

_last = datetime.min.replace(tzinfo=UTC)


def stamp() -> str:
    """Now, in chainlit's format (UTC, always with microseconds), strictly after every earlier stamp of
    this process: two steps shown one after the other never share a time, so they never swap."""
    global _last
    now = datetime.now(UTC)
    if now <= _last:
        now = _last + timedelta(microseconds=1)
    _last = now
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parent_id() -> str | None:
    """The parent chainlit gives a message created here: the innermost open step (the turn's run step)."""
    try:
        step = context.current_step
    except Exception:  # no chainlit context
        return None
    return step.id if step is not None else None


def order_key(created_at: object, now: float) -> float:
    """A stored step's place in the history: its `createdAt` as seconds, never later than now (a client's
    step cannot jump ahead of what the server shows next); now when there is none to read."""
    if not isinstance(created_at, str) or not created_at:
        return now
    try:
        at = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return now
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return min(at.timestamp(), now)
