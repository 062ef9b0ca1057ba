"""One way to decide: the chat's buttons, the operator console and the deadlines all record a decision
here, and here the suspended thread is moved on.

Recording goes through the store's `record_decision` (first decision wins, bound to the row). Moving on
is a wake-up, the `Waker` the agent gives (agent/resuming.py): it resumes the thread where a chat watches it,
on this process or, through a due-resume row, on the one holding the thread's browser.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from agent.approvals import Approved, Decision, Denied
from store import approvals as approval_store
from store.db import Database
from store.values import Approval

log = logging.getLogger("tollgate.agent")

How: TypeAlias = Literal["chat", "always", "console", "deadline"]
# Who may decide what: the console and the deadlines decide as operators (any thread, operator-routed calls).
_AS_OPERATOR: frozenset[How] = frozenset({"console", "deadline"})
_VIA: dict[How, str] = {"chat": "chat", "always": "always", "console": "console", "deadline": "system"}

Waker: TypeAlias = Callable[[str, str], "asyncio.Task[object]"]
"""(owner, thread_id) -> the resume under way (awaiting it waits for the turn; cancelling the awaiter
cancels the turn, like the chat's stop button does)."""


@dataclass(frozen=True)
class Recorded:
    """This decision moved the row out of pending (an expired row records as expired)."""
    approval: Approval
    moving_on: asyncio.Task[object] | None  # the resumed turn, when the thread was woken


@dataclass(frozen=True)
class Refused:
    """Nothing was recorded: the row was already decided, or this decider may not approve it."""
    approval: Approval
    why: str


DecisionOutcome: TypeAlias = Recorded | Refused


class Decisions:
    def __init__(self, db: Database, wake: Waker) -> None:
        self._db = db
        self._wake = wake

    async def decide(self, *, approval_id: str, decision: Decision, by: str, how: How, reason: str | None = None,
                     wake: bool = True) -> DecisionOutcome:
        """Record `decision` by `by` (the user, an operator's name, "system") and move the thread on.

        Raises store.threads.NotFound for an unknown approval or one the decider may not see. Fail closed:
        a second decision, or an approval of an operator-routed call by its user, is Refused and changes
        nothing. `wake=False` leaves moving on to the caller (a deadline timer resumes the thread itself).
        """
        verdict = "approved" if isinstance(decision, Approved) else "rejected"
        if reason is None and isinstance(decision, Denied):
            reason = decision.reason or None
        approval, changed = await approval_store.record_decision(
            self._db, approval_id=approval_id, decision=verdict, decided_by=by, via=_VIA[how],
            reason=reason, as_operator=how in _AS_OPERATOR)
        if not changed:
            why = ("only an operator can approve this call" if approval.status == "pending"
                   else f"the approval was already {approval.status}")
            return Refused(approval, why)
        if not wake:
            return Recorded(approval, None)
        return Recorded(approval, self._wake(approval.owner, approval.thread_id))

