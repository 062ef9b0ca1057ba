"""Running the tool calls of one model response.

Every tool_use gets exactly one tool_result, in order, keyed by tool_use_id. A call already recorded
is replayed, never re-run; unknown tools and invalid arguments get an error result. Read-only calls
run concurrently; side effects and egress calls that are not card-free (agent/egress.py) go through
the approval gate (agent/gate.py), all decided before any of them runs, then run one at a time in the
model's order. While any approval is still pending the batch suspends: outcomes so far are stored,
no results are written, and the thread is woken when the decision is recorded (agent/decide.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from agent import egress
from agent.gate import describe_egress, gate, side_effect, superseded
from agent.steps import BatchOutcome, Ran, Suspended
from agent.toolexec import NOT_RUN, ToolBatch, execute, result, wrap_output
from agent.wording import SUPERSEDED
from store import approvals as approval_store
from store.values import ToolOutcome
from tools import Tool, ToolArgumentError

Call = tuple[dict[str, Any], Tool, dict[str, Any]]  # (tool_use block, tool, validated arguments)


@dataclass
class _Plan:
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # known without running anything
    ungated: list[Call] = field(default_factory=list)  # read-only and card-free calls: run at once, together
    gated: list[Call] = field(default_factory=list)  # behind an approval


def _taint_from_store(b: ToolBatch, done: dict[str, ToolOutcome]) -> bool:
    """Record earlier untrusted outputs as sources; True if any untrusted call ever ran here (even unfinished)."""
    tainted = False
    for o in done.values():
        earlier = b.registry.get(o.tool)
        if earlier is not None and earlier.trusted_output:
            continue
        tainted = True  # a call that never finished may still have read something: egress fails closed
        label = earlier.source_label(o.args) if earlier else o.tool
        if o.status != "running" and label not in b.untrusted_sources:
            b.untrusted_sources.append(label)
    return tainted


def _plan(b: ToolBatch, uses: list[dict[str, Any]], done: dict[str, ToolOutcome], *, closing: bool) -> _Plan:
    plan, valid = _Plan(), []
    for use in uses:
        tid, tool = use["id"], b.registry.get(use.get("name", ""))
        if tid in done and done[tid].status != "running":  # replay: reuse the committed output
            o = done[tid]
            label = tool.source_label(o.args) if tool else o.tool
            plan.results[tid] = result(tid, wrap_output(tool, label, o.output, b.result_max_chars), o.is_error)
        elif tool is None:
            known = ", ".join(b.registry.names)
            plan.results[tid] = result(tid, f"Unknown tool {use.get('name')!r}. Available: {known}.", True)
        else:
            try:
                valid.append((use, tool, tool.validate(use.get("input"))))
            except ToolArgumentError as e:
                plan.results[tid] = result(tid, f"Invalid arguments for {tool.name}: {e}. {NOT_RUN}", True)
    gated_ids = egress.batch_needs_cards(valid, tainted_before=b.tainted, typed=egress.typed_urls(b.user_texts))
    plan.gated = [c for c in valid if c[0]["id"] in gated_ids]
    plan.ungated = [c for c in valid if c[0]["id"] not in gated_ids]
    if closing:  # the user moved on: nothing new runs; gated calls still close through their approval rows
        for use, _tool, _args in plan.ungated:
            plan.results[use["id"]] = result(use["id"], f"Not executed: the {SUPERSEDED}.", True)
        plan.ungated = []
    return plan


async def run_tool_uses(b: ToolBatch, uses: list[dict[str, Any]], *, superseded_by_user: bool = False) -> BatchOutcome:
    """Ran (the tool_result blocks for `uses`, in order) or Suspended (approvals pending)."""
    done = await approval_store.tool_outcomes(b.db, owner=b.owner, thread_id=b.thread_id)
    # Taint is per thread: anything a tool brought into this context earlier is still in it.
    b.tainted = _taint_from_store(b, done) or b.history_tainted
    plan = _plan(b, uses, done, closing=superseded_by_user)
    # Ungated calls first (together), so a card lists what they brought into the context.
    async with asyncio.TaskGroup() as tg:
        running = {u["id"]: tg.create_task(execute(b, u, t, a)) for u, t, a in plan.ungated}
    await describe_egress(b, plan.gated)
    async with asyncio.TaskGroup() as tg:
        gates = {u["id"]: tg.create_task(gate(b, u, t, a)) for u, t, a in plan.gated}
    plan.results.update({tid: task.result() for tid, task in running.items()})
    approvals = {tid: task.result() for tid, task in gates.items()}
    pending = [a for a in approvals.values() if a.status == "pending"]
    if pending:  # read-only outcomes are stored and will be replayed on resume, not re-run
        return Suspended(tuple(a.id for a in pending), until=min(a.expires_at for a in pending))
    for use, tool, args in plan.gated:  # side effects one at a time, in the model's order
        plan.results[use["id"]] = await side_effect(b, use, tool, args, approvals[use["id"]])
    return Ran(tuple(plan.results[u["id"]] for u in uses),
               superseded=any(superseded(a) for a in approvals.values()))
