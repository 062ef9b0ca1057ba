"""Running one tool call: isolation, the timeout (applied once, here), the stored outcome, its events.

The batch (which calls run, in what order, behind which gate) is agent/batch.py; the approval gate is
agent/gate.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.decide import DecisionOutcome
from agent.events import EventSink, ToolFinished, ToolStarted
from agent.trace import NULL_TRACE, TraceLog
from agent.wording import SUPERSEDED
from store import approvals as approval_store
from store.db import Database
from store.fencing import Fence
from store.values import Approval
from tools import Tool, ToolContext, ToolError, ToolRegistry

log = logging.getLogger("tollgate.tools")
NOT_RUN = "The tool did not run."


@dataclass
class ToolBatch:
    db: Database
    owner: str
    thread_id: str
    registry: ToolRegistry
    ctx: ToolContext
    decide: Callable[..., Awaitable[DecisionOutcome]]  # Agent.decide: the one way to record a decision
    emit: EventSink
    approval_timeout_s: float
    tool_timeout_s: float  # the ceiling for every call; a tool may declare a shorter timeout_s
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
    fence: Fence | None = None  # the turn's lease: no tool starts once it was taken over (store/fencing.py)

    def timeout_for(self, tool: Tool) -> float:
        return min(tool.timeout_s, self.tool_timeout_s)


def wrap_output(tool: Tool | None, source: str, text: str, limit: int) -> str:
    """Mark where a result came from; cap its size with a visible marker."""
    if len(text) > limit:
        text = text[:limit] + f"\n[truncated: showing {limit} of {len(text)} characters]"
    if tool is not None and tool.trusted_output:
        return text
    body = text.replace("</tool_output", "<\\/tool_output")  # content cannot close the wrapper early
    return f'<tool_output source="{source}" trust="untrusted">\n{body}\n</tool_output>'


def result(tool_use_id: str, text: str, is_error: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": text}
    if is_error:
        block["is_error"] = True
    return block


def denial(a: Approval) -> str:
    if a.status == "expired":
        return f"No decision was made before the approval expired. {NOT_RUN} Do not retry it on your own."
    who = "An operator" if a.decided_by not in (None, a.owner, "system") else "The user"
    if a.reason == SUPERSEDED:
        return f"Not executed: the {SUPERSEDED}."
    why = f" Reason: {a.reason}" if a.reason else ""
    return f"{who} rejected this call.{why} {NOT_RUN} Do not retry the same call; ask what they want instead."


async def execute(b: ToolBatch, use: dict[str, Any], tool: Tool, args: dict[str, Any]) -> dict[str, Any]:
    tid = use["id"]
    await b.emit(ToolStarted(tool_use_id=tid, name=tool.name, input=args))
    await approval_store.start_tool_call(b.db, thread_id=b.thread_id, tool_use_id=tid, tool=tool.name, args=args,
                                         fence=b.fence)
    started = time.perf_counter()
    is_error = True
    timeout_s = b.timeout_for(tool)
    try:
        async with asyncio.timeout(timeout_s):
            output = await tool.run(b.ctx, args)
        is_error = False
    except TimeoutError:
        output = f"Tool {tool.name} timed out after {timeout_s:g} s and was cancelled."
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
    return result(tid, wrap_output(tool, tool.source_label(args), output, b.result_max_chars), is_error)
