"""One user message's turn: its bookkeeping, and the small pure helpers the loop shares."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from agent import budget as budget_mod
from agent.budget import Budget
from agent.context import tool_uses
from agent.events import AgentEvent, EventSink, Notice, UsageReport
from store.usage import TokenUsage
from store.values import StoredMessage

log = logging.getLogger("tollgate.agent")


@dataclass
class Turn:
    id: str
    calls: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost_nano: int = 0
    notices: list[Notice] = field(default_factory=list)
    stop_reason: str = "end_turn"


def add_usage(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(*(x + y for x, y in zip(a.__dict__.values(), b.__dict__.values(), strict=True)))


def with_streamed_output(usage: TokenUsage, text: str) -> TokenUsage:
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


async def usage_report(budget: Budget, owner: str, thread_id: str, turn: Turn) -> UsageReport:
    spent, limit, thread = await budget.status(user=owner, thread_id=thread_id)
    u = turn.usage
    return UsageReport(input_tokens=u.prompt_tokens, output_tokens=u.output_tokens,
                       cache_read_share=(u.cache_read_tokens / u.prompt_tokens) if u.prompt_tokens else 0.0,
                       answer_cost_usd=budget_mod.usd(turn.cost_nano), thread_cost_usd=budget_mod.usd(thread),
                       today_usd=budget_mod.usd(spent), daily_limit_usd=budget_mod.usd(limit),
                       model_calls=turn.calls)


async def safe_emit(emit: EventSink, event: AgentEvent) -> None:
    """The turn is the source of truth; a UI that cannot render (closed tab) must not break it."""
    try:
        await emit(event)
    except Exception:
        log.warning("could not deliver %s", type(event).__name__, exc_info=True)


CUT_STOPS = ("max_tokens", "model_context_window_exceeded")
# The 5.x API refuses an assistant prefill, so "Continue" asks for the rest in a user message.
CONTINUE_PROMPT = ("Your previous answer was cut off. Continue it from exactly where it stopped, without "
                   "repeating what you already wrote.")


def stop_notice(stop_reason: str, category: str | None, max_tokens: int) -> Notice:
    if stop_reason == "refusal":
        why = f" (category: {category.replace('_', ' ')})" if category else ""
        return Notice("refusal", f"The model declined this request{why}; nothing was run. You can go on with "
                                 "another message.")
    if stop_reason == "model_context_window_exceeded":
        return Notice("max_tokens", "The answer was cut: the conversation reached the model's context window. "
                                    "Continue compresses the conversation first, then asks for the rest.",
                      continuable=True)
    return Notice("max_tokens", f"The answer was cut at the {max_tokens}-token limit. Continue asks for the rest.",
                  continuable=True)
