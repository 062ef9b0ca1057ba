"""Decisions are data: `Approved | Denied(reason)`. Approvers produce them; only the store row counts.

`ApprovalHub` lets whoever records a decision (a chat click, an operator, expiry) wake the turn
that waits for it in this process. After a restart nobody waits: the decision is still in the row
and the next drive of the thread picks it up.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from store.values import Approval


@dataclass(frozen=True)
class Approved:
    pass


@dataclass(frozen=True)
class Denied:
    reason: str


Decision: TypeAlias = Approved | Denied


class Approver(Protocol):
    async def decide(self, approval: Approval) -> Decision | None:
        """Return a decision to record, or None when the decision is recorded elsewhere (the hub)."""


def args_digest(tool: str, args: dict[str, Any]) -> str:
    """What the approver saw is what runs: a digest over the tool name and canonical arguments."""
    canonical = json.dumps({"tool": tool, "args": args}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ApprovalHub:
    """In-process wake-ups keyed by approval id (never by position)."""

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Event] = {}

    def waiting(self, approval_id: str) -> bool:
        return approval_id in self._waiters

    async def wait(self, approval_id: str, timeout_s: float) -> bool:
        """True if woken before the timeout."""
        ev = self._waiters.setdefault(approval_id, asyncio.Event())
        try:
            async with asyncio.timeout(max(timeout_s, 0.0)):
                await ev.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.pop(approval_id, None)

    def notify(self, approval_id: str) -> bool:
        """Wake the waiter, if any; returns whether a turn in this process was waiting."""
        ev = self._waiters.get(approval_id)
        if ev is None:
            return False
        ev.set()
        return True


class HubApprover:
    """Waits for a decision recorded by someone else (UI click, operator) through the hub."""

    def __init__(self, hub: ApprovalHub) -> None:
        self.hub = hub

    async def decide(self, approval: Approval) -> Decision | None:
        await self.hub.wait(approval.id, approval.expires_at - time.time())
        return None
