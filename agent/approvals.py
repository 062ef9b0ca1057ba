"""Decisions are data: `Approved | Denied(reason)`. Approvers produce them; only the store row counts.

No coroutine waits through human time: when the approver has no answer yet, the turn suspends with
the pending row stored, and whoever records the decision later (a click, an operator, the expiry
timer, the first open after a restart) resumes the thread from the store.
"""

from __future__ import annotations

import hashlib
import json
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
        """Return a decision to record now, or None: the decision will be recorded later."""


def args_digest(tool: str, args: dict[str, Any]) -> str:
    """What the approver saw is what runs: a digest over the tool name and canonical arguments."""
    canonical = json.dumps({"tool": tool, "args": args}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class DeferredApprover:
    """The chat's approver: the decision arrives later, from a click, so the turn suspends."""

    async def decide(self, approval: Approval) -> Decision | None:
        return None
