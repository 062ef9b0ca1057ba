"""Running the tool calls of one model response: validation, the approval gate, isolation, timeouts.

Every tool_use gets exactly one tool_result, in order, keyed by tool_use_id. Read-only calls run
concurrently. Side-effecting calls run only when their approval row says approved for the exact
argument digest and `claim_execution` succeeds, which it does at most once per approval. Egress calls
(tools that can send data off the machine) take the same gate unless agent/egress.py finds them
card-free (untainted thread, an address the user typed). Fail
closed: an approver that raises or overruns the deadline leaves the row unapproved, so nothing runs.
While any approval of the batch is still pending the batch suspends: outcomes so far are stored,
no results are written, and the thread is resumed when the decision is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent import egress
from agent.approvals import Approved, Approver, args_digest
from agent.events import ApprovalRequested, ApprovalResolved, EventSink, ToolFinished, ToolStarted
from agent.trace import NULL_TRACE, TraceLog
from store import approvals as approval_store
from store.db import Database
from store.values import Approval, ToolOutcome
from tools import Tool, ToolArgumentError, ToolContext, ToolError, ToolRegistry

log = logging.getLogger("tollgate.tools")
SUPERSEDED = "user sent a new message instead"
_NOT_RUN = "The tool did not run."


@dataclass
class ToolBatch:
    db: Database
    owner: str
    thread_id: str
    registry: ToolRegistry
    ctx: ToolContext
    approver: Approver
    emit: EventSink
    approval_timeout_s: float
    result_max_chars: int
    route_for: Callable[[Tool, dict[str, Any]], str]
    card_costs: Callable[[], Awaitable[tuple[str, str]]]
    trace: TraceLog = NULL_TRACE
    turn_id: str = ""
    untrusted_sources: list[str] = field(default_factory=list)
    user_texts: tuple[str, ...] = ()  # what the user typed in this thread: the only card-free egress addresses
    history_tainted: bool = True  # an untrusted tool result is in the stored messages (unknown: assume so)
    tainted: bool = False  # any witness of untrusted content, incl. calls that never finished (set per batch)
    risks: dict[str, str] = field(default_factory=dict)  # tool_use id -> the card's risk line, when not tool.risk
    stop_turn: bool = False  # set when the batch was superseded by a new user message
    pending: list[Approval] = field(default_factory=list)  # undecided: the batch suspends


def wrap_output(tool: Tool | None, source: str, text: str, limit: int) -> str:
    """Mark where a result came from; cap its size with a visible marker."""
    if len(text) > limit:
        text = text[:limit] + f"\n[truncated: showing {limit} of {len(text)} characters]"
    if tool is not None and tool.trusted_output:
        return text
    body = text.replace("</tool_output", "<\\/tool_output")  # content cannot close the wrapper early
    return f'<tool_output source="{source}" trust="untrusted">\n{body}\n</tool_output>'


def _result(tool_use_id: str, text: str, is_error: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": text}
    if is_error:
        block["is_error"] = True
    return block


def _denial(a: Approval) -> str:
    if a.status == "expired":
        return f"No decision was made before the approval expired. {_NOT_RUN} Do not retry it on your own."
    who = "An operator" if a.decided_by not in (None, a.owner, "system") else "The user"
    if a.reason == SUPERSEDED:
        return f"Not executed: the {SUPERSEDED}."
    why = f" Reason: {a.reason}" if a.reason else ""
    return f"{who} rejected this call.{why} {_NOT_RUN} Do not retry the same call; ask what they want instead."


async def _execute(b: ToolBatch, use: dict[str, Any], tool: Tool, args: dict[str, Any]) -> dict[str, Any]:
    tid = use["id"]
    await b.emit(ToolStarted(tool_use_id=tid, name=tool.name, input=args))
    await approval_store.start_tool_call(b.db, thread_id=b.thread_id, tool_use_id=tid, tool=tool.name, args=args)
    started = time.perf_counter()
    is_error = True
    try:
        async with asyncio.timeout(tool.timeout_s):
            output = await tool.run(b.ctx, args)
        is_error = False
    except TimeoutError:
        output = f"Tool {tool.name} timed out after {tool.timeout_s:g} s and was cancelled."
    except ToolError as e:
        output = f"Tool error ({tool.name}): {e}"
    except Exception as e:  # isolation: a broken tool is a result for the model, never a crashed turn
        log.exception("tool %s failed", tool.name)
        output = f"Tool error ({tool.name}): {type(e).__name__}: {str(e)[:200]}"
    ms = (time.perf_counter() - started) * 1000
    await approval_store.finish_tool_call(b.db, thread_id=b.thread_id, tool_use_id=tid, output=output,
                                          is_error=is_error, duration_ms=ms)
    b.trace.emit("tool_call", user=b.owner, thread=b.thread_id, turn=b.turn_id, tool_use_id=tid, tool=tool.name,
                 ms=round(ms, 3), is_error=is_error, output_chars=len(output), content=output)
    await b.emit(ToolFinished(tool_use_id=tid, name=tool.name, input=args, output=output, is_error=is_error,
                              duration_ms=ms))
    if not tool.trusted_output and tool.source_label(args) not in b.untrusted_sources:
        b.untrusted_sources.append(tool.source_label(args))  # error text can carry injected words too
    return _result(tid, wrap_output(tool, tool.source_label(args), output, b.result_max_chars), is_error)


async def _gate(b: ToolBatch, use: dict[str, Any], tool: Tool, args: dict[str, Any]) -> Approval:
    """Ask for (or find) the approval of this call; returns the row as it stands afterwards."""
    digest = args_digest(tool.name, args)
    a = await approval_store.request_approval(
        b.db, owner=b.owner, thread_id=b.thread_id, tool_use_id=use["id"], tool=tool.name, args=args,
        args_digest=digest, risk=b.risks.get(use["id"], tool.risk), untrusted_sources=b.untrusted_sources,
        route=b.route_for(tool, args), timeout_s=b.approval_timeout_s)
    always = (a.status == "pending" and a.route == "user" and not tool.high_risk
              and tool.name in await approval_store.always_approved(b.db, owner=b.owner, thread_id=b.thread_id))
    clean = not b.untrusted_sources and not b.tainted  # a standing choice applies only in an untainted thread
    if always and clean:  # the user's standing choice; taint suspends it
        await approval_store.decide(b.db, approval_id=a.id, decision="approved", decided_by=b.owner, via="always",
                                    reason=None)
    elif a.status == "pending" and a.expires_at > time.time():
        thread_cost, left_today = await b.card_costs()
        await b.emit(ApprovalRequested(approval=a, thread_cost_usd=thread_cost, left_today_usd=left_today,
                                       can_always=a.route == "user" and not tool.high_risk and clean,
                                       always_suspended=always))
        decision = None
        try:  # the deadline holds here too: an approver that never answers cannot stall the turn
            async with asyncio.timeout(max(a.expires_at - time.time(), 0.0)):
                decision = await b.approver.decide(a)
        except TimeoutError:
            pass
        except Exception:  # fail closed: a broken approver is a rejection, never an approval
            log.exception("approver failed for %s", a.id)
            await approval_store.decide(b.db, approval_id=a.id, decision="rejected", decided_by="system",
                                        via="system", reason="the approval could not be obtained", as_operator=True)
        if decision is not None:
            verdict = "approved" if isinstance(decision, Approved) else "rejected"
            reason = None if isinstance(decision, Approved) else decision.reason
            await approval_store.decide(b.db, approval_id=a.id, decision=verdict, decided_by=b.owner,
                                        via="chat", reason=reason)
    await approval_store.expire_or_reject_pending(b.db, thread_id=b.thread_id, status="expired",
                                                  reason="no decision before the deadline", only_due=True)
    a = await approval_store.get_approval(b.db, approval_id=a.id, viewer=b.owner)
    if a.status == "pending":
        b.pending.append(a)
    else:
        wait = ((a.decided_at or a.requested_at) - a.requested_at) * 1000
        b.trace.emit("approval", user=b.owner, thread=b.thread_id, turn=b.turn_id, approval=a.id, tool=a.tool,
                     route=a.route, status=a.status, decided_by=a.decided_by, wait_ms=round(wait, 3),
                     args_digest=a.args_digest, reason_chars=len(a.reason or ""))
        await b.emit(ApprovalResolved(approval=a))
    return a


async def _side_effect(b: ToolBatch, use: dict[str, Any], tool: Tool, args: dict[str, Any],
                       approval: Approval) -> dict[str, Any]:
    tid = use["id"]
    if approval.status != "approved":
        if approval.reason == SUPERSEDED:
            b.stop_turn = True
        return _result(tid, _denial(approval), True)
    if approval.executed:  # claimed before a crash; its outcome was never recorded
        return _result(tid, "The outcome of this approved call is unknown (interrupted). It was not re-run.", True)
    if not await approval_store.claim_execution(b.db, approval_id=approval.id,
                                                args_digest=args_digest(tool.name, args)):
        return _result(tid, f"The approved arguments do not match this call. {_NOT_RUN}", True)
    return await _execute(b, use, tool, args)


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


async def _describe_egress(b: ToolBatch, gated: list[tuple[dict[str, Any], Tool, dict[str, Any]]]) -> None:
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


async def run_tool_uses(b: ToolBatch, uses: list[dict[str, Any]], *,
                        superseded: bool = False) -> list[dict[str, Any]] | None:
    """The tool_result blocks for `uses`, in order; None while an approval is pending (suspended)."""
    done: dict[str, ToolOutcome] = await approval_store.tool_outcomes(b.db, owner=b.owner, thread_id=b.thread_id)
    # Taint is per thread: anything a tool brought into this context earlier is still in it.
    b.tainted = _taint_from_store(b, done) or b.history_tainted
    results: dict[str, dict[str, Any]] = {}
    plan: list[tuple[dict[str, Any], Tool, dict[str, Any]]] = []
    for use in uses:
        tid, tool = use["id"], b.registry.get(use.get("name", ""))
        if tid in done and done[tid].status != "running":  # replay: reuse the committed output
            o = done[tid]
            label = tool.source_label(o.args) if tool else o.tool
            results[tid] = _result(tid, wrap_output(tool, label, o.output, b.result_max_chars), o.is_error)
        elif tool is None:
            known = ", ".join(b.registry.names)
            results[tid] = _result(tid, f"Unknown tool {use.get('name')!r}. Available: {known}.", True)
        else:
            try:
                plan.append((use, tool, tool.validate(use.get("input"))))
            except ToolArgumentError as e:
                results[tid] = _result(tid, f"Invalid arguments for {tool.name}: {e}. {_NOT_RUN}", True)
    pending = [p for p in plan if p[0]["id"] not in results]
    # Side effects and egress calls that are not card-free go through the gate; decided before anything runs.
    gated = egress.batch_needs_cards(pending, tainted_before=b.tainted, typed=egress.typed_urls(b.user_texts))
    ungated = [p for p in pending if p[0]["id"] not in gated]
    effects = [p for p in pending if p[0]["id"] in gated]
    if superseded:
        for use, _tool, _args in ungated:
            results[use["id"]] = _result(use["id"], f"Not executed: the {SUPERSEDED}.", True)
        ungated = []
    # Ungated calls first (together), so a card lists what they brought into the context.
    async with asyncio.TaskGroup() as tg:
        ro_tasks = {u["id"]: tg.create_task(_execute(b, u, t, a)) for u, t, a in ungated}
    await _describe_egress(b, effects)
    async with asyncio.TaskGroup() as tg:
        gates = {u["id"]: tg.create_task(_gate(b, u, t, a)) for u, t, a in effects}
    results.update({tid: task.result() for tid, task in ro_tasks.items()})
    if b.pending:  # read-only outcomes are stored and will be replayed on resume, not re-run
        return None
    for use, tool, args in effects:  # side effects one at a time, in the model's order
        results[use["id"]] = await _side_effect(b, use, tool, args, gates[use["id"]].result())
    return [results[u["id"]] for u in uses]
