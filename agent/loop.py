"""The agent loop: UI-agnostic, driven entirely from the stored thread.

`drive` looks at the thread as stored: an assistant message whose tool_use blocks have no results
yet is finished first (the same path serves a fresh turn, a decision after a reload and a resume
after a crash), then the model is called on the rebuilt context, until the model stops asking for
tools or a guard (budget, call cap, refusal, error) stops the turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent import budget as budget_mod
from agent import egress, thread_model
from agent.approvals import Denied
from agent.batch import run_tool_uses
from agent.budget import Budget, BudgetExceeded, Reservation
from agent.cluster import Membership
from agent.compress import STALE_THINKING, ModelContext
from agent.config import Settings
from agent.deadlines import Deadlines
from agent.decide import Decisions
from agent.events import AnswerKept, AssistantMessageDone, EventSink, Notice, TextDelta, ThinkingDelta, TurnFinished
from agent.leases import ThreadTurns
from agent.model import ModelClient, ModelError, StreamProgress
from agent.partial import PartialAnswer
from agent.steps import Finished, NextCall, NextStep, Ran, Stopped, Suspended
from agent.toolexec import ToolBatch
from agent.trace import NULL_TRACE, TraceLog, trace_model_call
from agent.turn import (
    CONTINUE_PROMPT,
    CUT_STOPS,
    Turn,
    add_usage,
    safe_emit,
    stop_notice,
    unresolved_tool_uses,
    usage_report,
    with_streamed_output,
)
from agent.wakeups import ResumeDispatcher, Sinks
from agent.wording import SUPERSEDED
from store import approvals as approval_store
from store import cluster as cluster_store
from store import threads as thread_store
from store import usage as usage_store
from store.db import Database
from store.usage import TokenUsage
from store.values import StoredMessage
from tools import FetchPolicy, Tool, ToolContext, ToolRegistry, Workspace

log = logging.getLogger("tollgate.agent")
EXPIRED = "no decision before the deadline"


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
    # Tools of one user alone (servers they connected themselves, tools/mcp/user_servers.py): listed and callable
    # only in that user's turns, never in `registry`, which every user shares.
    user_tools: Callable[[str], Sequence[Tool]] = lambda owner: ()

    def registry_for(self, owner: str) -> ToolRegistry:
        """The shared registry itself for a user without tools of their own: the same tools block, byte for byte."""
        own = [t for t in self.user_tools(owner) if t.name not in self.registry]  # the shared name wins
        return ToolRegistry([*self.registry, *own]) if own else self.registry


class Agent:
    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        # Several processes may share the database (README "Past one machine"): this process's membership
        # (registered by the runtime), one turn at a time per thread across processes, deadlines and decisions
        # taken elsewhere as due rows run by the dispatcher, into the chat that watches the thread (sinks).
        self.member = Membership(deps.db)
        self.turns = ThreadTurns(deps.db, holder=lambda: self.member.id, alive_since=self.member.alive_since)
        self.sinks = Sinks()
        self.dispatcher = ResumeDispatcher(self.member, self._resume_due)
        self.deadlines = Deadlines(deps.db, wake=self.dispatcher.poke)
        # The one way to decide (agent/decide.py): a decision is a row, then a wake-up (a due resume), so the
        # process holding the thread's browser moves it on, whichever process took the decision.
        self.decisions = Decisions(deps.db, self._wake_via_row)
        self.decide = self.decisions.decide
        self._waking: set[asyncio.Task[object]] = set()
        self._trusted_tools = frozenset(t.name for t in deps.registry if t.trusted_output)
        # Cache breakpoints, compression and the cache-break watch (agent/compress.py); checks at start-up
        # that tools + system clear the model's minimum cacheable prefix.
        self.context = ModelContext(db=deps.db, settings=deps.settings, model=deps.model, budget=deps.budget,
                                    tools=deps.registry.api_definitions(), trace=deps.trace)

    def is_running(self, thread_id: str) -> bool:
        return self.turns.is_running_here(thread_id)

    def workspace_for(self, owner: str) -> Workspace:
        s = self.deps.settings
        return Workspace(s.workspaces_dir / owner, max_total_bytes=s.workspace_max_bytes,
                         max_files=s.workspace_max_files)

    async def run_turn(self, *, owner: str, thread_id: str, text: str, emit: EventSink) -> TurnFinished:
        """A new user message. Pending approvals of the thread are rejected first (the user moved on)."""
        s = self.deps.settings
        if len(text) > s.max_user_message_chars:
            notice = Notice("too_long", f"Your message is {len(text):,} characters; the limit is "
                                        f"{s.max_user_message_chars:,}. Nothing was sent to the model.")
            await safe_emit(emit, notice)
            return TurnFinished(stop_reason="rejected_input", notices=(notice,))
        if not text.strip():
            notice = Notice("empty", "Your message is empty. Nothing was sent to the model.")
            await safe_emit(emit, notice)
            return TurnFinished(stop_reason="rejected_input", notices=(notice,))
        await approval_store.expire_or_reject_pending(self.deps.db, thread_id=thread_id, status="rejected",
                                                      reason=SUPERSEDED)
        async with self.turns.hold(thread_id):
            await self.deadlines.cancel(thread_id)
            thread = await thread_store.get_thread(self.deps.db, owner=owner, thread_id=thread_id)
            if not thread.title:
                await thread_store.rename_thread(self.deps.db, owner=owner, thread_id=thread_id,
                                                 title=" ".join(text.split())[:60])
            messages = await thread_store.load_messages(self.deps.db, owner=owner, thread_id=thread_id)
            # Model, effort and thinking are fixed when a thread starts (agent/thread_model.py).
            await thread_model.fix_for_thread(self.deps.db, s, self.deps.budget.prices, user=owner,
                                              thread_id=thread_id, new=not messages)
            turn = Turn(id=uuid.uuid4().hex)
            if unresolved_tool_uses(messages):  # a batch left open (pending, crash, stop): close it, run nothing
                await self._finish_tools(owner, thread_id, messages, emit, turn, superseded=True)
            await self._append(messages, owner, thread_id, "user", [{"type": "text", "text": text}])
            return await self._drive(owner, thread_id, emit, turn, messages)

    async def resume(self, *, owner: str, thread_id: str, emit: EventSink) -> TurnFinished | None:
        """Continue a thread whose last answer has tool calls without results (after a decision, at the
        deadline, after a restart). Waits for a turn in progress; None if nothing is left open."""
        async with self.turns.hold(thread_id):
            await self.deadlines.cancel(thread_id)
            messages = await thread_store.load_messages(self.deps.db, owner=owner, thread_id=thread_id)
            if not unresolved_tool_uses(messages):
                return None
            return await self._drive(owner, thread_id, emit, await self._current_turn(thread_id), messages)

    async def _current_turn(self, thread_id: str) -> Turn:
        """A resumed turn is the same user message going on: its calls keep counting against the
        per-message cap, so approving one call at a time cannot buy a fresh 15 calls each time."""
        last = await usage_store.last_turn(self.deps.db, thread_id=thread_id)
        if last is None:
            return Turn(id=uuid.uuid4().hex)
        turn_id, chat_calls = last
        return Turn(id=turn_id, calls=chat_calls)

    async def watch_deadline(self, *, owner: str, thread_id: str, at: float, **_ui: Any) -> None:
        """Make sure a suspended thread has its deadline row (threads suspended before those rows existed)."""
        await self.deadlines.ensure(owner=owner, thread_id=thread_id, at=at)

    async def recover(self) -> int:
        """At start-up: every pending approval's deadline has its row (enforced even if nobody returns); rows
        already there, perhaps claimed by a live peer, are left alone.

        Batches left open by a crash with nothing pending are closed when their thread next moves: a
        side effect whose approval was claimed reports "outcome unknown" and is never re-run."""
        earliest: dict[tuple[str, str], float] = {}
        for a in await approval_store.pending_approvals(self.deps.db, owner=None):
            key = (a.owner, a.thread_id)
            earliest[key] = min(earliest.get(key, a.expires_at), a.expires_at)
        added = 0
        for (owner, thread_id), at in earliest.items():
            added += await self.deadlines.ensure(owner=owner, thread_id=thread_id, at=at)
        return added

    def _wake_via_row(self, owner: str, thread_id: str) -> asyncio.Task[object]:
        """Decisions' wake-up. When the thread's browser is on another live process: a due resume row now,
        which that process's dispatcher claims once and resumes there. Otherwise the thread moves on here
        (rendering into the chat that watches it here, if any), under its lease like every other turn."""

        async def wake() -> object:
            watcher = await cluster_store.watcher_of(self.deps.db, thread_id=thread_id,
                                                     alive_since=self.member.alive_since(time.time()))
            if watcher is not None and watcher != self.member.id:
                await self.deadlines.continue_now(owner=owner, thread_id=thread_id)
                return None
            return await self.sinks.run(thread_id, lambda emit: self.resume(owner=owner, thread_id=thread_id,
                                                                             emit=emit))

        task: asyncio.Task[object] = asyncio.create_task(wake())
        self._waking.add(task)
        task.add_done_callback(self._waking.discard)
        return task

    async def _resume_due(self, owner: str, thread_id: str) -> None:
        """A due resume claimed here (a deadline, or a decision taken here or elsewhere): record the approvals
        whose deadline passed as expired through the one decision path, then move the thread on where its
        chat renders."""
        for a in await approval_store.pending_approvals(self.deps.db, owner=owner, thread_id=thread_id):
            if a.expires_at <= time.time():
                await self.decide(approval_id=a.id, decision=Denied(EXPIRED), by="system", how="deadline",
                                  wake=False)
        await self.sinks.run(thread_id, lambda emit: self.resume(owner=owner, thread_id=thread_id, emit=emit))

    async def close(self) -> None:
        await self.dispatcher.close()

    async def retry(self, *, owner: str, thread_id: str, emit: EventSink) -> TurnFinished | None:
        """Run the model again after a failed call (the "Retry" button); None if nothing to retry."""
        if self.is_running(thread_id):
            return None
        async with self.turns.hold(thread_id):
            messages = await thread_store.load_messages(self.deps.db, owner=owner, thread_id=thread_id)
            complete = [m for m in messages if not m.incomplete]
            if not complete or complete[-1].role != "user":
                return None
            return await self._drive(owner, thread_id, emit, Turn(id=uuid.uuid4().hex), messages)

    async def continue_cut(self, *, owner: str, thread_id: str, emit: EventSink) -> TurnFinished | None:
        """The "Continue" action: the newest answer was cut (max_tokens or the context window), so ask for
        the rest; after a window stop the context is compressed first. None if there is nothing to continue."""
        if self.is_running(thread_id):
            return None
        async with self.turns.hold(thread_id):
            messages = await thread_store.load_messages(self.deps.db, owner=owner, thread_id=thread_id)
            complete = [m for m in messages if not m.incomplete]
            stop = await usage_store.last_chat_stop(self.deps.db, thread_id=thread_id)
            if not complete or complete[-1].role != "assistant" or stop not in CUT_STOPS:
                return None
            if stop == "model_context_window_exceeded":
                self.context.compress_next(thread_id)
            await self._append(messages, owner, thread_id, "user", [{"type": "text", "text": CONTINUE_PROMPT}])
            return await self._drive(owner, thread_id, emit, Turn(id=uuid.uuid4().hex), messages)

    async def _finish_tools(self, owner: str, thread_id: str, messages: list[StoredMessage], emit: EventSink,
                            turn: Turn, *, superseded: bool = False) -> NextStep:
        """Run and record results for the open tool calls; the turn's next step."""
        d = self.deps
        batch = ToolBatch(
            db=d.db, owner=owner, thread_id=thread_id, registry=d.registry_for(owner),
            ctx=ToolContext(workspace=self.workspace_for(owner), user=owner, thread_id=thread_id,
                            fetch_policy=d.fetch_policy),
            decide=self.decide, emit=lambda e: safe_emit(emit, e), approval_timeout_s=d.settings.approval_timeout_s,
            tool_timeout_s=d.settings.tool_timeout_s, result_max_chars=d.settings.tool_result_max_chars,
            route_for=d.route_for, card_costs=lambda: self._card_costs(owner, thread_id), trace=d.trace,
            turn_id=turn.id, user_texts=egress.user_texts(messages),
            history_tainted=egress.results_in_history(messages, trusted_tools=self._trusted_tools))
        match await run_tool_uses(batch, unresolved_tool_uses(messages), superseded_by_user=superseded):
            case Suspended(until=until) as suspended:
                self.sinks.remember(thread_id, emit)  # the deadline's resume renders where this turn did
                await self.deadlines.arm(owner=owner, thread_id=thread_id, at=until)
                return suspended
            case Ran(results=results, superseded=closed):
                await self._append(messages, owner, thread_id, "user", list(results))
                return Stopped("superseded") if closed else NextCall()

    async def _append(self, messages: list[StoredMessage], owner: str, thread_id: str, role: str,
                      content: list[dict[str, Any]]) -> None:
        """Store a message and add it to the turn's copy of the thread (the turn holds the thread's lock,
        so nothing else appends: no reload per model call)."""
        seq = await thread_store.append_message(self.deps.db, owner=owner, thread_id=thread_id, role=role,
                                                content=content)
        messages.append(StoredMessage(seq=seq, role=role, content=content, incomplete=False, created_at=time.time()))

    async def _card_costs(self, owner: str, thread_id: str) -> tuple[str, str]:
        spent, limit, thread = await self.deps.budget.status(user=owner, thread_id=thread_id)
        return budget_mod.usd(thread), budget_mod.usd(max(limit - spent, 0))

    async def _drive(self, owner: str, thread_id: str, emit: EventSink, turn: Turn,
                     messages: list[StoredMessage]) -> TurnFinished:
        step = await self._next_step(owner, thread_id, messages, emit, turn)
        while isinstance(step, NextCall):
            step = await self._next_step(owner, thread_id, messages, emit, turn)
        match step:
            case Suspended():
                turn.stop_reason = "awaiting_approval"
            case Stopped(reason=reason):
                turn.stop_reason = reason
            case Finished(stop_reason=reason):
                turn.stop_reason = reason
        for n in turn.notices:
            await safe_emit(emit, n)
        report = None
        if turn.calls and turn.stop_reason != "awaiting_approval":
            report = await usage_report(self.deps.budget, owner, thread_id, turn)
        if report is not None:
            await safe_emit(emit, report)
        finished = TurnFinished(stop_reason=turn.stop_reason, usage=report, notices=tuple(turn.notices))
        await safe_emit(emit, finished)
        return finished

    async def _next_step(self, owner: str, thread_id: str, messages: list[StoredMessage], emit: EventSink,
                         turn: Turn) -> NextStep:
        """Finish open tool calls if there are any, else call the model (unless the per-message cap is reached)."""
        if unresolved_tool_uses(messages):
            return await self._finish_tools(owner, thread_id, messages, emit, turn)
        if turn.calls >= self.deps.settings.max_calls_per_message:
            turn.notices.append(Notice("call_cap", f"Stopped after {turn.calls} model calls for one message "
                                                   "(the per-message cap). Send another message to go on."))
            return Stopped("call_cap")
        return await self._call_model(owner, thread_id, messages, emit, turn)

    async def _call_model(self, owner: str, thread_id: str, messages: list[StoredMessage], emit: EventSink,
                          turn: Turn, *, retry_stale: bool = True) -> NextStep:
        """One model call with its reservation; stores the answer. NextCall when the model asked for tools."""
        d, s = self.deps, self.deps.settings
        choice = await thread_model.for_thread(d.db, s, thread_id=thread_id)
        # --- context (agent/compress.py): breakpoints, stored summary, compression when due ---
        # (and the prompt's size from the free count_tokens endpoint, for the reservation)
        request, summary_cost, prompt_tokens = await self.context.prepare(
            owner=owner, thread_id=thread_id, turn_id=turn.id, messages=messages,
            tools=d.registry_for(owner).api_definitions(), emit=lambda e: safe_emit(emit, e), choice=choice)
        turn.cost_nano += summary_cost
        # --- end context ---
        try:
            reservation = await d.budget.reserve(user=owner, thread_id=thread_id, turn_id=turn.id, model=choice.model,
                                                 purpose="chat", prompt_tokens=prompt_tokens,
                                                 max_tokens=s.max_tokens,
                                                 calls_this_turn_cap=s.max_calls_per_message)
        except BudgetExceeded as e:
            turn.notices.append(Notice("budget", e.user_message()))
            return Stopped("budget")
        progress = StreamProgress()
        answer = PartialAnswer(d.db, owner=owner, thread_id=thread_id, interval_s=s.partial_save_interval_s,
                               on_kept=lambda text: safe_emit(emit, AnswerKept(text)))

        async def on_text(delta: str) -> None:
            answer.add(delta)
            await safe_emit(emit, TextDelta(delta))

        async def on_thinking(block: int, delta: str) -> None:
            await safe_emit(emit, ThinkingDelta(delta, block))

        try:
            result = await d.model.stream(model=choice.model, max_tokens=s.max_tokens, system=request.system,
                                          tools=request.tools, messages=request.messages, on_text=on_text,
                                          progress=progress, thinking=choice.thinking_config(),
                                          effort=choice.effort,
                                          on_thinking=on_thinking)
        except ModelError as e:
            if retry_stale and e.kind == "invalid_request" and STALE_THINKING in e.message \
                    and self.context.drop_stale_thinking(thread_id, messages):
                await d.budget.release(reservation, TokenUsage(), error=e.message, latency_ms=e.latency_ms)
                return await self._call_model(owner, thread_id, messages, emit, turn, retry_stale=False)
            used = with_streamed_output(e.partial_usage, e.partial_text)
            cost = await d.budget.release(reservation, used, error=e.message, latency_ms=e.latency_ms)
            turn.cost_nano += cost
            trace_model_call(d.trace, owner, thread_id, turn.id, choice.model, used, cost, stop_reason=None,
                             ttft_ms=None, latency_ms=e.latency_ms, retries=None, error=e.kind)
            turn.usage = add_usage(turn.usage, used)
            turn.calls += 1
            await self._keep_partial(answer, e.partial_text, emit)
            turn.notices.append(Notice("api_error", e.message, retryable=e.retryable))
            return Stopped("api_error")
        except asyncio.CancelledError:  # the user pressed stop: keep what arrived, charge what was reported
            await asyncio.shield(self._on_cancel(reservation, answer, progress))
            raise
        cost = await d.budget.settle(reservation, result.usage, stop_reason=result.stop_reason,
                                     ttft_ms=result.ttft_ms, latency_ms=result.latency_ms)
        turn.cost_nano += cost
        trace_model_call(d.trace, owner, thread_id, turn.id, choice.model, result.usage, cost,
                         stop_reason=result.stop_reason, ttft_ms=result.ttft_ms, latency_ms=result.latency_ms,
                         retries=result.retries, error=None)
        self.context.observe(thread_id, request, result.usage)  # counts and logs cache breaks
        turn.usage = add_usage(turn.usage, result.usage)
        turn.calls += 1
        turn.stop_reason = result.stop_reason
        content = result.content
        cut = result.stop_reason in CUT_STOPS
        if result.stop_reason == "refusal" or cut:
            # A refused turn's tool calls never run; a cut tool call has incomplete arguments.
            content = [b for b in content if b.get("type") != "tool_use"]
            turn.notices.append(stop_notice(result.stop_reason, result.refusal_category, s.max_tokens))
        content = [b for b in content if not (b.get("type") == "text" and not b.get("text"))]
        if not content:
            content = [{"type": "text", "text": "(no answer)"}]
        seq = await answer.finish(content)  # replaces the partial row kept while streaming, if any
        messages.append(StoredMessage(seq=seq, role="assistant", content=content, incomplete=False,
                                      created_at=time.time()))
        text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        await safe_emit(emit, AssistantMessageDone(text=text, incomplete=cut))
        return NextCall() if result.stop_reason in ("tool_use", "pause_turn") else Finished(result.stop_reason)

    async def _keep_partial(self, answer: PartialAnswer, partial: str, emit: EventSink) -> None:
        await answer.keep_cut(partial)
        await safe_emit(emit, AssistantMessageDone(text=partial, incomplete=True))

    async def _on_cancel(self, reservation: Reservation, answer: PartialAnswer, progress: StreamProgress) -> None:
        partial = "".join(progress.text)
        await self.deps.budget.release(reservation, with_streamed_output(progress.usage, partial),
                                       error="cancelled by the user", latency_ms=0.0)
        await answer.keep_cut(partial)

