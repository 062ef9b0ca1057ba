"""A brain's reply as the 5.x API returns it: thinking blocks (signed, bound to the prefix), progress
updates before each tool_use, thinking counted in output_tokens and toward max_tokens, and the stop
reasons max_tokens / model_context_window_exceeded / refusal (with stop_details)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .replies import Reply, TextBlock
from .thinking import PROGRESS_TOKENS, PrefixHash, plan_for, progress_text, reasoning_text, reasoning_tokens
from .tokens import canonical_json, estimate_tokens

__all__ = ["Composed", "compose"]

REFUSAL_DETAILS = {"type": "refusal", "category": "general_harms",
                   "explanation": "The request was declined by the demo model's [refusal] marker."}


@dataclass
class Composed:
    content: list[dict[str, Any]] = field(default_factory=list)
    hidden_tokens: list[int] = field(default_factory=list)  # per block: thinking tokens not shown as text
    output_tokens: int = 0
    thinking_tokens: int = 0
    stop_reason: str = "end_turn"
    stop_details: dict[str, Any] | None = None


def _planned(body: dict[str, Any], reply: Reply, tool_id: Callable[[], str]) -> list[tuple[dict[str, Any], int]]:
    """(block, tokens) in order, before any cut."""
    plan = plan_for(body)
    items: list[tuple[dict[str, Any], int]] = []
    if plan.thinks and (think := reasoning_tokens(plan)):
        items.append(({"type": "thinking", "thinking": reasoning_text(plan, think)}, think))
    for block in reply.blocks:
        if isinstance(block, TextBlock):
            items.append(({"type": "text", "text": block.text}, estimate_tokens(block.text)))
            continue
        if plan.thinks:
            items.append(({"type": "thinking", "thinking": progress_text(plan, block.name)}, PROGRESS_TOKENS))
        use = {"type": "tool_use", "id": block.id or tool_id(), "name": block.name, "input": block.input}
        items.append((use, estimate_tokens(canonical_json(block.input))))
    return items


def compose(body: dict[str, Any], reply: Reply, *, key: bytes, prompt_tokens: int, context_window: int,
            tool_id: Callable[[], str]) -> Composed:
    max_tokens = int(body["max_tokens"])
    room = context_window - prompt_tokens
    budget, cut_reason = (max_tokens, "max_tokens") if max_tokens <= room else (room, "model_context_window_exceeded")
    prefix = PrefixHash(key, body)
    for message in body.get("messages") or []:
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for b in blocks:
            prefix.add(str(message.get("role")), b)
    out = Composed(stop_reason=reply.stop_reason)
    for block, tokens in _planned(body, reply, tool_id):
        left = budget - out.output_tokens
        cut = tokens > left
        if cut:
            if block["type"] == "tool_use" or left <= 0:
                out.stop_reason = cut_reason
                break
            text_key = "thinking" if block["type"] == "thinking" else "text"
            block = {**block, text_key: block[text_key][: left * 4]}
            tokens = left
        if block["type"] == "thinking":
            block["signature"] = prefix.sign(block["thinking"])
            out.thinking_tokens += tokens
            out.hidden_tokens.append(max(tokens - estimate_tokens(block["thinking"]), 0))
        else:
            prefix.add("assistant", block)
            out.hidden_tokens.append(0)
        out.content.append(block)
        out.output_tokens += tokens
        if cut:
            out.stop_reason = cut_reason
            break
    if out.stop_reason == "refusal":
        out.stop_details = reply.stop_details or REFUSAL_DETAILS
    return out
