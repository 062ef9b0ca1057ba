"""The approval gate: side effects, and egress calls that are not card-free, run only when their approval
row says approved for the exact argument digest and `claim_execution` succeeds (at most once).

The gate shows a card and reads the row back: only the row counts. A decision recorded meanwhile (a
standing "approve always", a fast click, an operator) lets the call go on at once; otherwise the batch
suspends and whoever decides later wakes the thread (agent/decide.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent import egress
from agent.approvals import Approved, args_digest
from agent.events import ApprovalRequested, ApprovalResolved
from agent.toolexec import NOT_RUN, ToolBatch, denial, execute, result
from agent.wording import SUPERSEDED
from store import approvals as approval_store
from store.values import Approval
from tools import Tool


async def gate(b: ToolBatch, use: dict[str, Any], tool: Tool, args: dict[str, Any]) -> Approval:
    """Ask for (or find) the approval of this call; returns the row as it stands afterwards."""
    a = await approval_store.request_approval(
        b.db, owner=b.owner, thread_id=b.thread_id, tool_use_id=use["id"], tool=tool.name, args=args,
        args_digest=args_digest(tool.name, args), risk=b.risks.get(use["id"], tool.risk),
        untrusted_sources=b.untrusted_sources, route=b.route_for(tool, args), timeout_s=b.approval_timeout_s)
    always = (a.status == "pending" and a.route == "user" and not tool.high_risk
              and tool.name in await approval_store.always_approved(b.db, owner=b.owner, thread_id=b.thread_id))
    clean = not b.untrusted_sources and not b.tainted  # a standing choice applies only in an untainted thread
    if always and clean:  # the user's standing choice; taint suspends it
        await b.decide(approval_id=a.id, decision=Approved(), by=b.owner, how="always", wake=False)
    elif a.status == "pending" and a.expires_at > time.time():
        thread_cost, left_today = await b.card_costs()
        await b.emit(ApprovalRequested(approval=a, thread_cost_usd=thread_cost, left_today_usd=left_today,
                                       can_always=a.route == "user" and not tool.high_risk and clean,
                                       always_suspended=always))
    await approval_store.expire_or_reject_pending(b.db, thread_id=b.thread_id, status="expired",
                                                  reason="no decision before the deadline", only_due=True)
    a = await approval_store.get_approval(b.db, approval_id=a.id, viewer=b.owner)
    if a.status != "pending":
        wait = ((a.decided_at or a.requested_at) - a.requested_at) * 1000
        b.trace.emit("approval", user=b.owner, thread=b.thread_id, turn=b.turn_id, approval=a.id, tool=a.tool,
                     route=a.route, status=a.status, decided_by=a.decided_by, wait_ms=round(wait, 3),
                     args_digest=a.args_digest, reason_chars=len(a.reason or ""))
        await b.emit(ApprovalResolved(approval=a))
    return a


async def side_effect(b: ToolBatch, use: dict[str, Any], tool: Tool, args: dict[str, Any],
                      approval: Approval) -> dict[str, Any]:
    """Run a gated call whose approval is decided: only if approved, unclaimed and for these arguments."""
    tid = use["id"]
    if approval.status != "approved":
        return result(tid, denial(approval), True)
    if approval.executed:  # claimed before a crash; its outcome was never recorded
        return result(tid, "The outcome of this approved call is unknown (interrupted). It was not re-run.", True)
    if not await approval_store.claim_execution(b.db, approval_id=approval.id,
                                                args_digest=args_digest(tool.name, args), fence=b.fence):
        return result(tid, f"The approved arguments do not match this call. {NOT_RUN}", True)
    return await execute(b, use, tool, args)


def superseded(approval: Approval) -> bool:
    """Closed because the user sent a new message: the turn stops after this batch."""
    return approval.status != "approved" and approval.reason == SUPERSEDED


async def describe_egress(b: ToolBatch, gated: list[tuple[dict[str, Any], Tool, dict[str, Any]]]) -> None:
    """The card's risk line for each gated egress call: where each part of its address came from."""
    calls = [(use, tool, args) for use, tool, args in gated if tool.egress]
    if not calls:
        return
    outcomes = await approval_store.tool_outcomes(b.db, owner=b.owner, thread_id=b.thread_id)
    sources = []
    for o in outcomes.values():
        t = b.registry.get(o.tool)
        if t is None or not t.trusted_output:
            sources.append(egress.Source(t.source_label(o.args) if t else o.tool, o.output or ""))
    for use, tool, args in calls:  # off the event loop: a thread's outputs can be megabytes of text
        b.risks[use["id"]] = await asyncio.to_thread(egress.risk_text, tool, args, typed=b.user_texts,
                                                     sources=sources)
