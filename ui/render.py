"""Renders agent events into the Chainlit chat of one session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import chainlit as cl

from agent.events import (
    AgentEvent,
    ApprovalRequested,
    ApprovalResolved,
    AssistantMessageDone,
    ContextCompressed,
    Notice,
    TextDelta,
    ThinkingDelta,
    ToolFinished,
    ToolStarted,
    TurnFinished,
    UsageReport,
)
from store.values import Approval
from ui import cards
from ui.history import INCOMPLETE_MARK
from ui.placement import parent_id, stamp
from ui.safe_markdown import StreamSanitizer
from ui.safe_text import reveal_line
from ui.streaming import DeltaBatcher

APPROVE, REJECT, REJECT_WHY, RETRY = "tollgate_approve", "tollgate_reject", "tollgate_reject_why", "tollgate_retry"
APPROVE_ALWAYS, STOP_ALWAYS = "tollgate_approve_always", "tollgate_stop_always"
CONTINUE = "tollgate_continue"
# At most one socket update per interval; 0 sends every delta (only for the streaming benchmark's baseline).
STREAM_INTERVAL_S = float(os.environ.get("TOLLGATE_STREAM_INTERVAL_MS", "50")) / 1000


def action(name: str, payload: dict[str, Any], label: str, icon: str | None = None) -> cl.Action:
    """A button whose DOM id starts with its name, so public/tollgate.css can style it (primary, secondary)."""
    return cl.Action(name=name, payload=payload, label=label, icon=icon, id=f"{name}-{uuid.uuid4()}")


def approval_actions(approval_id: str, *, can_always: bool = False, can_approve: bool = True) -> list[cl.Action]:
    """The card's buttons: the owner can always reject; approving an operator-routed call is the operator's."""
    payload = {"approval_id": approval_id}
    actions = [action(APPROVE, payload, "Approve", "check")] if can_approve else []
    actions += [action(REJECT, payload, "Reject", "x"), action(REJECT_WHY, payload, "Reject with reason…")]
    if can_always:
        actions.append(action(APPROVE_ALWAYS, payload, "Approve always in this thread"))
    return actions


class ChatRenderer:
    def __init__(self, cards: dict[str, cl.Message] | None = None,
                 preview: Callable[[Approval], str | None] | None = None) -> None:
        self._preview = preview or (lambda a: None)
        self._msg: cl.Message | None = None
        self._batcher: DeltaBatcher | None = None
        self._clean = StreamSanitizer()
        self._steps: dict[str, cl.Step] = {}
        self._thinking: tuple[int, cl.Step] | None = None  # the open thinking step and its block index
        self._think_clean = StreamSanitizer()  # thinking is model text: no image reaches the browser either
        # Thinking streams like text: at most one socket update per interval. Unbatched, every thinking delta
        # was a socket event (≈ 20 a turn here, each encoded, framed and compressed).
        self._think_batcher: DeltaBatcher | None = None
        self._answer: cl.Message | None = None  # this turn's last answer: the usage line is its footer
        self._stored_cards: dict[str, dict[str, Any]] = {}  # approval id -> its card in the stored history
        self._answer_ids: set[str] = set()
        self.cards = cards if cards is not None else {}

    def remember_cards(self, steps: list[dict[str, Any]]) -> None:
        """A reopened thread's stored cards: a pending one is re-sent in its own place (same id), not
        appended below the history as a second card."""
        for s in steps:
            approval_id = (s.get("metadata") or {}).get("approval_id")
            if isinstance(approval_id, str):
                self._stored_cards[approval_id] = s

    async def __call__(self, event: AgentEvent) -> None:
        match event:
            case ThinkingDelta(text=text, block=block):
                await self._think(text, block)
            case TextDelta(text=text, answer_id=answer_id):
                await self._end_thinking()
                if self._msg is None:  # stamped now: it is shown from its first token, so that is its place
                    # The answer's id: the agent keeps it in the history under that id while it streams (a
                    # second message of the same answer, after a thinking step, gets its own).
                    shown = answer_id and answer_id not in self._answer_ids
                    self._answer_ids.add(answer_id)
                    self._msg = cl.Message(content="", created_at=stamp(), id=answer_id if shown else None)
                    self._clean = StreamSanitizer()
                    self._batcher = DeltaBatcher(self._stream_clean, interval_s=STREAM_INTERVAL_S)
                assert self._batcher is not None
                await self._batcher.add(text)
            case AssistantMessageDone(incomplete=cut):
                await self._end_message(cut=cut)
            case ToolStarted(tool_use_id=tid, name=name, input=args):
                await self._end_thinking()
                step = placed(cl.Step(name=reveal_line(name), type="tool", show_input="json"))
                step.input = cards.tool_input(args)
                self._steps[tid] = step
                await step.send()
            case ToolFinished(tool_use_id=tid, output=output, is_error=is_error):
                done_step = self._steps.pop(tid, None)
                if done_step is not None:
                    step = done_step
                    step.output = cards.display_output(output)
                    step.is_error = is_error
                    step.end = datetime.now(UTC).isoformat()
                    await step.update()
            case ApprovalRequested(approval=a, thread_cost_usd=cost, left_today_usd=left) as req:
                await self._end_message()
                actions = approval_actions(a.id, can_always=req.can_always, can_approve=a.route == "user")
                text = cards.card_text(a, thread_cost=cost, left_today=left, diff=self._preview(a),
                                       always_suspended=req.always_suspended)
                card = self._card(a.id, text, actions)
                self.cards[a.id] = card
                await card.send()
            case ApprovalResolved(approval=a):
                resolved = self.cards.pop(a.id, None)
                await resolve_card(resolved, cards.outcome_text(a))
                if a.decided_via == "always":
                    stop = action(STOP_ALWAYS, {"thread_id": a.thread_id, "tool": a.tool},
                                  f"Stop auto-approving {a.tool}")
                    await cl.Message(content=cards.always_on_text(a.tool), actions=[stop], created_at=stamp()).send()
            case ContextCompressed(messages_summarised=n, tokens_before=before, tokens_after=after):
                await self._end_message()
                async with placed(cl.Step(name="context compressed", type="tool", show_input=False)) as step:
                    step.output = cards.compression_text(n, before, after)
            case Notice() as n:
                await self._end_message()
                actions = [action(RETRY, {}, "Retry", "rotate-ccw")] if n.retryable else []
                if n.continuable:  # a cut answer: the rest is one click away (agent.loop.continue_cut)
                    actions.append(action(CONTINUE, {}, "Continue"))
                await cl.Message(content=cards.notice_text(n), actions=actions, created_at=stamp()).send()
            case UsageReport() as u:
                await self._usage_footer(u)
            case TurnFinished():
                await self._end_message()
            case _:
                pass

    def _card(self, approval_id: str, text: str, actions: list[cl.Action]) -> cl.Message:
        """A new card is stamped now; one coming back after a reload keeps its stored id, place and parent."""
        stored = self._stored_cards.pop(approval_id, None)
        if stored is None:
            return cl.Message(content=text, actions=actions, metadata={"approval_id": approval_id},
                              created_at=stamp())
        return cl.Message(content=text, actions=actions, metadata={"approval_id": approval_id}, id=stored["id"],
                          parent_id=stored.get("parentId"), created_at=stored.get("createdAt") or stamp())

    async def _usage_footer(self, u: UsageReport) -> None:
        """The usage line closes the turn's answer as its footer (styled by public/tollgate.css); a turn
        that showed no answer gets it as a line of its own."""
        line = cards.usage_line(u)
        answer = self._answer
        if answer is None:
            await cl.Message(content=cards.usage_footer(line), author="usage", created_at=stamp(),
                             metadata={"usage": line}).send()
            return
        answer.content = f"{answer.content}\n\n{cards.usage_footer(line)}"
        answer.metadata = {**(answer.metadata or {}), "usage": line}
        await answer.update()

    async def _stream_clean(self, chunk: str) -> None:
        """The browser appends deltas: send only sanitised text, never half an image (ui/safe_markdown.py)."""
        text, replace = self._clean.feed(chunk)
        if self._msg is not None and (text or replace):
            await self._msg.stream_token(text, is_sequence=replace)

    async def _think(self, text: str, block: int) -> None:
        """A collapsible "Thinking…" step, shown as soon as a thinking block starts (nothing else streams
        meanwhile) and placed where it happens: before the tool step its progress update leads to."""
        if self._thinking is None or self._thinking[0] != block:
            await self._end_message()  # the text so far stays above; the thinking goes after it
            step = placed(cl.Step(name="Thinking…", type="llm", show_input=False))
            await step.send()
            self._thinking = (block, step)
            self._think_clean = StreamSanitizer()
            self._think_batcher = DeltaBatcher(self._stream_thinking, interval_s=STREAM_INTERVAL_S)
        assert self._think_batcher is not None
        await self._think_batcher.add(text)

    async def _stream_thinking(self, chunk: str) -> None:
        clean, replace = self._think_clean.feed(chunk)
        if self._thinking is not None and (clean or replace):
            await self._thinking[1].stream_token(clean, is_sequence=replace)

    async def _end_thinking(self) -> None:
        if self._thinking is None:
            return
        if self._think_batcher is not None:
            await self._think_batcher.close()
            self._think_batcher = None
        step = self._thinking[1]
        self._thinking = None
        step.name = "Thought"
        self._think_clean.finish()
        step.output = self._think_clean.sent or "(the model's thinking is not shown)"
        step.end = datetime.now(UTC).isoformat()
        await step.update()

    async def _end_message(self, *, cut: bool = False) -> None:
        await self._end_thinking()
        if self._batcher is not None:
            await self._batcher.close()
        if self._msg is not None:
            self._clean.finish()
            # the whole answer, sanitised, replaces what streamed; a cut one says so
            self._msg.content = self._clean.sent + (INCOMPLETE_MARK if cut else "")
            await self._msg.send()
            if self._msg.content.strip():
                self._answer = self._msg
        self._msg, self._batcher = None, None


def placed(step: cl.Step) -> cl.Step:
    """A step sits where it happens: under the same parent as the messages around it (chainlit gives a
    message the current run step, a bare `cl.Step` none, and the history puts parentless steps after the
    whole turn), stamped strictly after everything shown before it."""
    step.parent_id = parent_id()
    step.created_at = stamp()
    return step


async def resolve_card(card: Any, text: str) -> None:
    if card is None:
        await cl.Message(content=text, created_at=stamp()).send()
        return
    await card.remove_actions()
    card.actions = []
    card.content = text
    await card.update()
