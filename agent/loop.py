"""The agent loop: UI-agnostic, driven entirely from the stored thread. Here the turn's entry points (a new
message, a resume, retry, continue) and the loop over its steps; one model call is agent/model_call.py, moving
a suspended thread on (decisions, deadlines, due resumes) is agent/resuming.py.

`_drive` looks at the thread as stored: an assistant message whose tool_use blocks have no results
yet is finished first (the same path serves a fresh turn, a decision after a reload and a resume
after a crash), then the model is called on the rebuilt context, until the model stops asking for
tools or a guard (budget, call cap, refusal, error) stops the turn.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from agent import budget as budget_mod
from agent import egress, thread_model
from agent.batch import run_tool_uses
from agent.cluster import Membership
from agent.compress import ModelContext
from agent.deps import AgentDeps
from agent.events import EventSink, Notice, TurnFinished
from agent.leases import ThreadTurns
from agent.model_call import call_model
from agent.resuming import ThreadWaking
from agent.steps import Finished, NextCall, NextStep, Ran, Stopped, Suspended
from agent.toolexec import ToolBatch
from agent.turn import CONTINUE_PROMPT, CUT_STOPS, Turn, safe_emit, unresolved_tool_uses, usage_report
from agent.wording import SUPERSEDED
from store import approvals as approval_store
from store import threads as thread_store
from store import usage as usage_store
from store.fencing import LeaseLost
from store.values import StoredMessage
from tools import ToolContext, Workspace

__all__ = ["Agent", "AgentDeps"]
log = logging.getLogger("tollgate.agent")


class Agent:
    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        # Several processes may share the database (README "Past one machine"): this process's membership
        # (registered by the runtime), one turn at a time per thread across processes.
        self.member = Membership(deps.db)
        self.turns = ThreadTurns(deps.db, holder=lambda: self.member.id, alive_since=self.member.alive_since)
        # Decisions, deadlines and due resumes move a suspended thread on (agent/resuming.py).
        self.waking = ThreadWaking(deps.db, self.member, lambda owner, thread_id, emit: self.resume(
            owner=owner, thread_id=thread_id, emit=emit))
        self.sinks, self.dispatcher = self.waking.sinks, self.waking.dispatcher
        self.deadlines, self.decisions = self.waking.deadlines, self.waking.decisions
        self.decide = self.decisions.decide
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
        """At start-up: every pending approval's deadline has its row (agent/resuming.py)."""
        return await self.waking.recover()

    async def close(self) -> None:
        await self.waking.close()

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
            db=d.db, owner=owner, thread_id=thread_id, registry=d.registry,
            ctx=ToolContext(workspace=self.workspace_for(owner), user=owner, thread_id=thread_id,
                            fetch_policy=d.fetch_policy),
            decide=self.decide, emit=lambda e: safe_emit(emit, e), approval_timeout_s=d.settings.approval_timeout_s,
            tool_timeout_s=d.settings.tool_timeout_s, result_max_chars=d.settings.tool_result_max_chars,
            route_for=d.route_for, card_costs=lambda: self._card_costs(owner, thread_id), trace=d.trace,
            turn_id=turn.id, user_texts=egress.user_texts(messages),
            history_tainted=egress.results_in_history(messages, trusted_tools=self._trusted_tools),
            fence=self.turns.fence(thread_id))
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
                                                content=content, fence=self.turns.fence(thread_id))
        messages.append(StoredMessage(seq=seq, role=role, content=content, incomplete=False, created_at=time.time()))

    async def _card_costs(self, owner: str, thread_id: str) -> tuple[str, str]:
        spent, limit, thread = await self.deps.budget.status(user=owner, thread_id=thread_id)
        return budget_mod.usd(thread), budget_mod.usd(max(limit - spent, 0))

    async def _drive(self, owner: str, thread_id: str, emit: EventSink, turn: Turn,
                     messages: list[StoredMessage]) -> TurnFinished:
        try:
            step = await self._next_step(owner, thread_id, messages, emit, turn)
            while isinstance(step, NextCall):
                step = await self._next_step(owner, thread_id, messages, emit, turn)
        except (LeaseLost, ExceptionGroup) as e:  # a batch's tools run in a TaskGroup
            if not isinstance(e, LeaseLost) and not e.subgroup(LeaseLost):
                raise
            # This process stalled past dead_after_s and a peer took the thread over: it stops, writing nothing.
            log.warning("thread %s: lease taken over by another process; this turn stopped", thread_id)
            turn.notices.append(Notice("info", "Another server process took this conversation over while this one "
                                               "was stalled; this answer stopped here. Reload to see the "
                                               "conversation as stored."))
            step = Stopped("lease_lost")
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
        return await call_model(self.deps, self.context, owner=owner, thread_id=thread_id, messages=messages,
                                emit=emit, turn=turn, fence=self.turns.fence(thread_id))
