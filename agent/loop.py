"""The agent loop: UI-agnostic, driven entirely from the stored thread.

`drive` looks at the thread as stored: an assistant message whose tool_use blocks have no results
yet is finished first (the same path serves a fresh turn, a decision after a reload and a resume
after a crash), then the model is called on the rebuilt context, until the model stops asking for
tools or a guard (budget, call cap, refusal, error) stops the turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent import budget as budget_mod
from agent.approvals import Approver
from agent.budget import Budget, BudgetExceeded, Reservation
from agent.compress import ModelContext
from agent.config import Settings
from agent.context import tool_uses
from agent.events import AgentEvent, AssistantMessageDone, EventSink, Notice, TextDelta, TurnFinished, UsageReport
from agent.model import ModelClient, ModelError, StreamProgress
from agent.toolexec import SUPERSEDED, ToolBatch, run_tool_uses
from agent.trace import NULL_TRACE, TraceLog
from store import approvals as approval_store
from store import threads as thread_store
from store import usage as usage_store
from store.db import Database
from store.usage import TokenUsage
from store.values import StoredMessage
from tools import FetchPolicy, Tool, ToolContext, ToolRegistry, Workspace

log = logging.getLogger("tollgate.agent")


@dataclass
class AgentDeps:
    db: Database
    settings: Settings
    model: ModelClient
    registry: ToolRegistry
    budget: Budget
    route_for: Callable[[Tool, dict[str, Any]], str] = lambda tool, args: "user"
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)
    trace: TraceLog = NULL_TRACE


@dataclass
class _Turn:
    id: str
    calls: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost_nano: int = 0
    notices: list[Notice] = field(default_factory=list)
    stop_reason: str = "end_turn"


def _add(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(*(x + y for x, y in zip(a.__dict__.values(), b.__dict__.values(), strict=True)))


def _with_streamed_output(usage: TokenUsage, text: str) -> TokenUsage:
    """A call cut mid-stream reports output_tokens=1 (message_start); the text we received was billed,
    so charge at least a conservative estimate of it (UTF-8 bytes / 3)."""
    estimate = (len(text.encode()) + 2) // 3
    return dataclasses.replace(usage, output_tokens=max(usage.output_tokens, estimate))


def unresolved_tool_uses(messages: list[StoredMessage]) -> list[dict[str, Any]]:
    """tool_use blocks of the last assistant message that no later message answers."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "assistant":
            answered = {b.get("tool_use_id") for m in messages[i + 1:] for b in m.content}
            return [u for u in tool_uses(messages[i].content) if u["id"] not in answered]
    return []


class Agent:
    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._expiry: dict[str, asyncio.Task[None]] = {}  # per suspended thread: resumes it at the deadline
        # Cache breakpoints, compression and the cache-break watch (agent/compress.py); checks at start-up
        # that tools + system clear the model's minimum cacheable prefix.
        self.context = ModelContext(db=deps.db, settings=deps.settings, model=deps.model, budget=deps.budget,
                                    tools=deps.registry.api_definitions())

    def _lock(self, thread_id: str) -> asyncio.Lock:
        lock = self._locks.get(thread_id)
        if lock is None:
            lock = self._locks[thread_id] = asyncio.Lock()
        return lock

    def is_running(self, thread_id: str) -> bool:
        lock = self._locks.get(thread_id)
        return lock is not None and lock.locked()

    def workspace_for(self, owner: str) -> Workspace:
        return Workspace(self.deps.settings.workspaces_dir / owner)

    async def run_turn(self, *, owner: str, thread_id: str, text: str, emit: EventSink,
                       approver: Approver) -> TurnFinished:
        """A new user message. Pending approvals of the thread are rejected first (the user moved on)."""
        s = self.deps.settings
        if len(text) > s.max_user_message_chars:
            notice = Notice("too_long", f"Your message is {len(text):,} characters; the limit is "
                                        f"{s.max_user_message_chars:,}. Nothing was sent to the model.")
            await _safe(emit, notice)
            return TurnFinished(stop_reason="rejected_input", notices=(notice,))
        if not text.strip():
            notice = Notice("empty", "Your message is empty. Nothing was sent to the model.")
            await _safe(emit, notice)
            return TurnFinished(stop_reason="rejected_input", notices=(notice,))
        await approval_store.expire_or_reject_pending(self.deps.db, thread_id=thread_id, status="rejected",
                                                      reason=SUPERSEDED)
        async with self._lock(thread_id):
            self._cancel_expiry(thread_id)
            thread = await thread_store.get_thread(self.deps.db, owner=owner, thread_id=thread_id)
            if not thread.title:
                await thread_store.rename_thread(self.deps.db, owner=owner, thread_id=thread_id,
                                                 title=" ".join(text.split())[:60])
            messages = await thread_store.load_messages(self.deps.db, owner=owner, thread_id=thread_id)
            turn = _Turn(id=uuid.uuid4().hex)
            if unresolved_tool_uses(messages):  # a batch left open (pending, crash, stop): close it, run nothing
                await self._finish_tools(owner, thread_id, messages, emit, approver, turn, superseded=True)
            await thread_store.append_message(self.deps.db, owner=owner, thread_id=thread_id, role="user",
                                              content=[{"type": "text", "text": text}])
            return await self._drive(owner, thread_id, emit, approver, turn)

    async def resume(self, *, owner: str, thread_id: str, emit: EventSink, approver: Approver) -> TurnFinished | None:
        """Continue a thread whose last answer has tool calls without results (after a decision, at the
        deadline, after a restart). Waits for a turn in progress; None if nothing is left open."""
        async with self._lock(thread_id):
            if self._expiry.get(thread_id) is not asyncio.current_task():
                self._cancel_expiry(thread_id)
            messages = await thread_store.load_messages(self.deps.db, owner=owner, thread_id=thread_id)
            if not unresolved_tool_uses(messages):
                return None
            return await self._drive(owner, thread_id, emit, approver, await self._current_turn(thread_id))

    async def _current_turn(self, thread_id: str) -> _Turn:
        """A resumed turn is the same user message going on: its calls keep counting against the
        per-message cap, so approving one call at a time cannot buy a fresh 15 calls each time."""
        last = await usage_store.last_turn(self.deps.db, thread_id=thread_id)
        if last is None:
            return _Turn(id=uuid.uuid4().hex)
        turn_id, chat_calls = last
        return _Turn(id=turn_id, calls=chat_calls)

    def _cancel_expiry(self, thread_id: str) -> None:
        task = self._expiry.pop(thread_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _schedule_expiry(self, owner: str, thread_id: str, at: float, emit: EventSink, approver: Approver) -> None:
        """Server-side deadline for a suspended turn: at `at`, expire what is due and go on."""
        self._cancel_expiry(thread_id)

        async def fire() -> None:
            await asyncio.sleep(max(at - time.time(), 0.0))
            try:
                await self.resume(owner=owner, thread_id=thread_id, emit=emit, approver=approver)
            except Exception:  # e.g. the thread was deleted meanwhile: nothing left to expire
                log.warning("deadline of thread %s could not be enforced", thread_id, exc_info=True)
            finally:
                if self._expiry.get(thread_id) is asyncio.current_task():
                    del self._expiry[thread_id]

        # The task inherits this context, so its events reach the same chat session.
        self._expiry[thread_id] = asyncio.create_task(fire())

    def watch_deadline(self, *, owner: str, thread_id: str, at: float, emit: EventSink, approver: Approver) -> None:
        """(Re)arm the deadline of a suspended thread, e.g. when its owner reopens it after a restart."""
        self._schedule_expiry(owner, thread_id, at, emit, approver)

    async def recover(self, emit: EventSink, approver: Approver) -> int:
        """After a restart: re-arm every pending approval's deadline (enforced even if nobody returns).

        Batches left open by a crash with nothing pending are closed when their thread next moves: a
        side effect whose approval was claimed reports "outcome unknown" and is never re-run."""
        pending = await approval_store.pending_approvals(self.deps.db, owner=None)
        earliest: dict[tuple[str, str], float] = {}
        for a in pending:
            key = (a.owner, a.thread_id)
            earliest[key] = min(earliest.get(key, a.expires_at), a.expires_at)
        for (owner, thread_id), at in earliest.items():
            self._schedule_expiry(owner, thread_id, at, emit, approver)
        return len(earliest)

    async def close(self) -> None:
        for task in list(self._expiry.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._expiry.clear()

    async def retry(self, *, owner: str, thread_id: str, emit: EventSink, approver: Approver) -> TurnFinished | None:
        """Run the model again after a failed call (the "Retry" button); None if nothing to retry."""
        if self.is_running(thread_id):
            return None
        async with self._lock(thread_id):
            messages = await thread_store.load_messages(self.deps.db, owner=owner, thread_id=thread_id)
            complete = [m for m in messages if not m.incomplete]
            if not complete or complete[-1].role != "user":
                return None
            return await self._drive(owner, thread_id, emit, approver, _Turn(id=uuid.uuid4().hex))

    async def _finish_tools(self, owner: str, thread_id: str, messages: list[StoredMessage], emit: EventSink,
                            approver: Approver, turn: _Turn, *, superseded: bool = False) -> str:
        """Run and record results for the open tool calls: "go", "stop" or "suspended"."""
        d = self.deps
        batch = ToolBatch(
            db=d.db, owner=owner, thread_id=thread_id, registry=d.registry,
            ctx=ToolContext(workspace=self.workspace_for(owner), user=owner, thread_id=thread_id,
                            fetch_policy=d.fetch_policy),
            approver=approver, emit=lambda e: _safe(emit, e),
            approval_timeout_s=d.settings.approval_timeout_s, result_max_chars=d.settings.tool_result_max_chars,
            route_for=d.route_for, card_costs=lambda: self._card_costs(owner, thread_id), trace=d.trace,
            turn_id=turn.id)
        results = await run_tool_uses(batch, unresolved_tool_uses(messages), superseded=superseded)
        if results is None:
            self._schedule_expiry(owner, thread_id, min(a.expires_at for a in batch.pending), emit, approver)
            return "suspended"
        await thread_store.append_message(d.db, owner=owner, thread_id=thread_id, role="user", content=results)
        return "stop" if batch.stop_turn else "go"

    async def _card_costs(self, owner: str, thread_id: str) -> tuple[str, str]:
        spent, limit = await self.deps.budget.daily_status(user=owner)
        thread = await self.deps.budget.thread_cost(thread_id=thread_id)
        return budget_mod.usd(thread), budget_mod.usd(max(limit - spent, 0))

    async def _drive(self, owner: str, thread_id: str, emit: EventSink, approver: Approver,
                     turn: _Turn) -> TurnFinished:
        d, s = self.deps, self.deps.settings
        while True:
            messages = await thread_store.load_messages(d.db, owner=owner, thread_id=thread_id)
            if unresolved_tool_uses(messages):
                outcome = await self._finish_tools(owner, thread_id, messages, emit, approver, turn)
                if outcome != "go":
                    turn.stop_reason = "awaiting_approval" if outcome == "suspended" else "superseded"
                    break
                continue
            if turn.calls >= s.max_calls_per_message:
                turn.notices.append(Notice("call_cap", f"Stopped after {turn.calls} model calls for one message "
                                                       "(the per-message cap). Send another message to go on."))
                turn.stop_reason = "call_cap"
                break
            if not await self._call_model(owner, thread_id, messages, emit, turn):
                break
            if turn.stop_reason not in ("tool_use", "pause_turn"):
                break
        for n in turn.notices:
            await _safe(emit, n)
        report = None
        if turn.calls and turn.stop_reason != "awaiting_approval":
            report = await self._usage_report(owner, thread_id, turn)
        if report is not None:
            await _safe(emit, report)
        finished = TurnFinished(stop_reason=turn.stop_reason, usage=report, notices=tuple(turn.notices))
        await _safe(emit, finished)
        return finished

    async def _call_model(self, owner: str, thread_id: str, messages: list[StoredMessage], emit: EventSink,
                          turn: _Turn) -> bool:
        """One model call with its reservation; stores the answer. False when the turn must stop."""
        d, s = self.deps, self.deps.settings
        # --- context (agent/compress.py): breakpoints, stored summary, compression when due ---
        request, summary_cost = await self.context.request_for(
            owner=owner, thread_id=thread_id, turn_id=turn.id, messages=messages,
            tools=d.registry.api_definitions(), emit=lambda e: _safe(emit, e))
        turn.cost_nano += summary_cost
        # --- end context ---
        try:
            reservation = await d.budget.reserve(user=owner, thread_id=thread_id, turn_id=turn.id, model=s.model,
                                                 purpose="chat", prompt_tokens=request.estimated_tokens(),
                                                 max_tokens=s.max_tokens,
                                                 calls_this_turn_cap=s.max_calls_per_message)
        except BudgetExceeded as e:
            turn.notices.append(Notice("budget", e.user_message()))
            turn.stop_reason = "budget"
            return False
        progress = StreamProgress()

        async def on_text(delta: str) -> None:
            await _safe(emit, TextDelta(delta))

        try:
            result = await d.model.stream(model=s.model, max_tokens=s.max_tokens, system=request.system,
                                          tools=request.tools, messages=request.messages, on_text=on_text,
                                          progress=progress)
        except ModelError as e:
            used = _with_streamed_output(e.partial_usage, e.partial_text)
            cost = await d.budget.release(reservation, used, error=e.message, latency_ms=e.latency_ms)
            turn.cost_nano += cost
            self._trace_call(owner, thread_id, turn, s.model, used, cost, stop_reason=None,
                             ttft_ms=None, latency_ms=e.latency_ms, retries=None, error=e.kind)
            turn.usage = _add(turn.usage, used)
            turn.calls += 1
            await self._keep_partial(owner, thread_id, e.partial_text, emit)
            turn.notices.append(Notice("api_error", e.message, retryable=e.retryable))
            turn.stop_reason = "api_error"
            return False
        except asyncio.CancelledError:  # the user pressed stop: keep what arrived, charge what was reported
            await asyncio.shield(self._on_cancel(reservation, owner, thread_id, progress))
            raise
        cost = await d.budget.settle(reservation, result.usage, stop_reason=result.stop_reason,
                                     ttft_ms=result.ttft_ms, latency_ms=result.latency_ms)
        turn.cost_nano += cost
        self._trace_call(owner, thread_id, turn, s.model, result.usage, cost, stop_reason=result.stop_reason,
                         ttft_ms=result.ttft_ms, latency_ms=result.latency_ms, retries=result.retries, error=None)
        self.context.observe(thread_id, request, result.usage)  # counts and logs cache breaks
        turn.usage = _add(turn.usage, result.usage)
        turn.calls += 1
        turn.stop_reason = result.stop_reason
        content = result.content
        if result.stop_reason in ("refusal", "max_tokens"):
            # A refused turn's tool calls never run; a cut tool call has incomplete arguments.
            content = [b for b in content if b.get("type") != "tool_use"]
            turn.notices.append(Notice("refusal", "The model declined this request; nothing was run.")
                                if result.stop_reason == "refusal" else
                                Notice("max_tokens", f"The answer was cut at the {s.max_tokens}-token limit."))
        content = [b for b in content if not (b.get("type") == "text" and not b.get("text"))]
        if not content:
            content = [{"type": "text", "text": "(no answer)"}]
        await thread_store.append_message(d.db, owner=owner, thread_id=thread_id, role="assistant", content=content)
        answer = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        await _safe(emit, AssistantMessageDone(text=answer, incomplete=result.stop_reason == "max_tokens"))
        return True

    async def _keep_partial(self, owner: str, thread_id: str, partial: str, emit: EventSink) -> None:
        if partial.strip():
            await thread_store.append_message(self.deps.db, owner=owner, thread_id=thread_id, role="assistant",
                                              content=[{"type": "text", "text": partial}], incomplete=True)
        await _safe(emit, AssistantMessageDone(text=partial, incomplete=True))

    def _trace_call(self, owner: str, thread_id: str, turn: _Turn, model: str, u: TokenUsage, cost_nano: int, *,
                    stop_reason: str | None, ttft_ms: float | None, latency_ms: float, retries: int | None,
                    error: str | None) -> None:
        self.deps.trace.emit("model_call", user=owner, thread=thread_id, turn=turn.id, model=model, purpose="chat",
                             stop_reason=stop_reason, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                             cache_write_tokens=u.cache_write_5m_tokens + u.cache_write_1h_tokens,
                             cache_read_tokens=u.cache_read_tokens, cost_nanousd=cost_nano,
                             ttft_ms=None if ttft_ms is None else round(ttft_ms, 3), model_ms=round(latency_ms, 3),
                             retries=retries, error=error)

    async def _on_cancel(self, reservation: Reservation, owner: str, thread_id: str,
                         progress: StreamProgress) -> None:
        partial = "".join(progress.text)
        await self.deps.budget.release(reservation, _with_streamed_output(progress.usage, partial),
                                       error="cancelled by the user", latency_ms=0.0)
        if partial.strip():
            await thread_store.append_message(self.deps.db, owner=owner, thread_id=thread_id, role="assistant",
                                              content=[{"type": "text", "text": partial}], incomplete=True)

    async def _usage_report(self, owner: str, thread_id: str, turn: _Turn) -> UsageReport:
        spent, limit = await self.deps.budget.daily_status(user=owner)
        thread = await self.deps.budget.thread_cost(thread_id=thread_id)
        u = turn.usage
        return UsageReport(input_tokens=u.prompt_tokens, output_tokens=u.output_tokens,
                           cache_read_share=(u.cache_read_tokens / u.prompt_tokens) if u.prompt_tokens else 0.0,
                           answer_cost_usd=budget_mod.usd(turn.cost_nano), thread_cost_usd=budget_mod.usd(thread),
                           today_usd=budget_mod.usd(spent), daily_limit_usd=budget_mod.usd(limit),
                           model_calls=turn.calls)


async def _safe(emit: EventSink, event: AgentEvent) -> None:
    """The turn is the source of truth; a UI that cannot render (closed tab) must not break it."""
    try:
        await emit(event)
    except Exception:
        log.warning("could not deliver %s", type(event).__name__, exc_info=True)


EmitFn = Callable[[AgentEvent], Awaitable[None]]
