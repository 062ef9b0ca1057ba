"""One model call of a turn: reserve its budget, stream the answer (kept in the store as it arrives),
settle what it cost, store the answer. The turn's next step says what follows (agent/steps.py).

A call cut by an API error or the user's stop keeps what arrived, marked incomplete, whatever the UI
rendered (agent/partial.py), and charges what was reported or streamed."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from agent.budget import BudgetExceeded, Reservation
from agent.compress import STALE_THINKING, ModelContext
from agent.context import ModelRequest
from agent.deps import AgentDeps
from agent.events import AnswerKept, AssistantMessageDone, EventSink, Notice, TextDelta, ThinkingDelta
from agent.model import ModelError, ModelResult, StreamProgress
from agent.partial import PartialAnswer
from agent.steps import Finished, NextCall, NextStep, Stopped
from agent.thread_model import ModelChoice, for_thread
from agent.trace import trace_model_call
from agent.turn import CUT_STOPS, Turn, add_usage, safe_emit, stop_notice, with_streamed_output
from store.fencing import Fence, LeaseLost
from store.usage import TokenUsage
from store.values import StoredMessage

log = logging.getLogger("tollgate.agent")

async def call_model(deps: AgentDeps, context: ModelContext, *, owner: str, thread_id: str,
                     messages: list[StoredMessage], emit: EventSink, turn: Turn, fence: Fence | None = None,
                     retry_stale: bool = True) -> NextStep:
    """One model call with its reservation; stores the answer. NextCall when the model asked for tools.
    `fence`: the turn's lease; the answer is not stored once another process holds the thread."""
    d, s = deps, deps.settings
    choice = await for_thread(d.db, s, thread_id=thread_id)
    # --- context (agent/compress.py): breakpoints, stored summary, compression when due ---
    # (and the prompt's size for the reservation: the free count_tokens endpoint at the turn's first call,
    # the previous call's bill plus what was appended since at its follow-ups, agent/reservation.py)
    request, summary_cost, prompt_tokens = await context.prepare(
        owner=owner, thread_id=thread_id, turn_id=turn.id, messages=messages,
        tools=d.registry_for(owner).api_definitions(), emit=lambda e: safe_emit(emit, e), choice=choice)
    turn.cost_nano += summary_cost
    # --- end context ---
    try:
        reservation = await d.budget.reserve(user=owner, thread_id=thread_id, turn_id=turn.id, model=choice.model,
                                             purpose="chat", prompt_tokens=prompt_tokens, max_tokens=s.max_tokens,
                                             calls_this_turn_cap=s.max_calls_per_message)
    except BudgetExceeded as e:
        turn.notices.append(Notice("budget", e.user_message()))
        return Stopped("budget")
    progress = StreamProgress()
    answer = PartialAnswer(d.db, owner=owner, thread_id=thread_id, interval_s=s.partial_save_interval_s,
                           on_kept=lambda text: safe_emit(emit, AnswerKept(text)), answer_id=uuid.uuid4().hex,
                           history=d.history, fence=fence)

    async def on_text(delta: str) -> None:
        answer.add(delta)
        await safe_emit(emit, TextDelta(delta, answer.answer_id))

    async def on_thinking(block: int, delta: str) -> None:
        await safe_emit(emit, ThinkingDelta(delta, block))

    try:
        result = await d.model.stream(model=choice.model, max_tokens=s.max_tokens, system=request.system,
                                      tools=request.tools, messages=request.messages, on_text=on_text,
                                      progress=progress, thinking=choice.thinking_config(), effort=choice.effort,
                                      on_thinking=on_thinking)
    except ModelError as e:
        if retry_stale and e.kind == "invalid_request" and STALE_THINKING in e.message \
                and context.drop_stale_thinking(thread_id, messages):
            await d.budget.release(reservation, TokenUsage(), error=e.message, latency_ms=e.latency_ms)
            return await call_model(deps, context, owner=owner, thread_id=thread_id, messages=messages, emit=emit,
                                    turn=turn, fence=fence, retry_stale=False)
        used = with_streamed_output(e.partial_usage, e.partial_text)
        cost = await d.budget.release(reservation, used, error=e.message, latency_ms=e.latency_ms)
        turn.cost_nano += cost
        trace_model_call(d.trace, owner, thread_id, turn.id, choice.model, used, cost, stop_reason=None,
                         ttft_ms=None, latency_ms=e.latency_ms, retries=None, error=e.kind)
        turn.usage = add_usage(turn.usage, used)
        turn.calls += 1
        await answer.keep_cut(e.partial_text)
        await safe_emit(emit, AssistantMessageDone(text=e.partial_text, incomplete=True))
        turn.notices.append(Notice("api_error", e.message, retryable=e.retryable))
        return Stopped("api_error")
    except asyncio.CancelledError:  # the user pressed stop: keep what arrived, charge what was reported
        await asyncio.shield(_on_cancel(deps, reservation, answer, progress))
        raise
    # The answer has arrived: a stop pressed now still settles and stores it (the turn then ends cancelled).
    recording = asyncio.ensure_future(_record(deps, context, owner, thread_id, messages, turn, choice,
                                              request, reservation, answer, result))
    try:
        content, cut = await asyncio.shield(recording)
    except asyncio.CancelledError:
        await recording
        raise
    text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
    await safe_emit(emit, AssistantMessageDone(text=text, incomplete=cut))
    return NextCall() if result.stop_reason in ("tool_use", "pause_turn") else Finished(result.stop_reason)


async def _record(deps: AgentDeps, context: ModelContext, owner: str, thread_id: str,
                  messages: list[StoredMessage], turn: Turn, choice: ModelChoice, request: ModelRequest,
                  reservation: Reservation, answer: PartialAnswer,
                  result: ModelResult) -> tuple[list[dict[str, Any]], bool]:
    """Settle the call and store its answer (in place of the kept partial, if any); the content and whether
    the answer was cut."""
    d, s = deps, deps.settings
    cost = await d.budget.settle(reservation, result.usage, stop_reason=result.stop_reason,
                                 ttft_ms=result.ttft_ms, latency_ms=result.latency_ms)
    turn.cost_nano += cost
    trace_model_call(d.trace, owner, thread_id, turn.id, choice.model, result.usage, cost,
                     stop_reason=result.stop_reason, ttft_ms=result.ttft_ms, latency_ms=result.latency_ms,
                     retries=result.retries, error=None)
    # counts and logs cache breaks; keeps the bill that sizes this turn's next call (agent/reservation.py)
    context.observe(thread_id, request, result.usage, turn_id=turn.id, choice=choice, stop_reason=result.stop_reason)
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
    messages.append(StoredMessage(seq=seq, role="assistant", content=content, incomplete=False, created_at=time.time()))
    return content, cut


async def _on_cancel(deps: AgentDeps, reservation: Reservation, answer: PartialAnswer,
                     progress: StreamProgress) -> None:
    partial = "".join(progress.text)
    await deps.budget.release(reservation, with_streamed_output(progress.usage, partial),
                              error="cancelled by the user", latency_ms=0.0)
    try:
        await answer.keep_cut(partial)
    except LeaseLost:  # the turn is being cancelled anyway: the cancellation goes on, not this
        log.warning("thread lease taken over: the stopped answer's text was not kept")
