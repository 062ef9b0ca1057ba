"""Thinking as the 5.x Messages API does it: per-model rules, effort, display, and bound signatures.

A thinking block's signature is an HMAC (server key) over the model, the block's own text and a hash of
everything before it: tools, system, and every earlier message block (thinking blocks and cache_control
left out, so dropping earlier thinking or moving a breakpoint is not an edit). Change any of that and the
block, and every later one, no longer verifies: the request is refused as the real API refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from .tokens import canonical_json, estimate_tokens

__all__ = [
    "EFFORTS",
    "UPDATES_BETA",
    "PrefixHash",
    "ThinkingPlan",
    "check_thinking",
    "plan_for",
    "reasoning_tokens",
]

EFFORTS = ("low", "medium", "high", "xhigh", "max")
UPDATES_BETA = "thinking-display-updates-2026-08-18"
DISPLAYS = ("omitted", "summarized", "updates")
# Estimated tokens of reasoning before the answer, by effort: effort changes how much the model thinks.
_REASONING_TOKENS = {"low": 8, "medium": 40, "high": 120, "xhigh": 300, "max": 600}
PROGRESS_TOKENS = 12  # a progress-update block before each tool_use
_SIGNATURE_HELP = (
    "Thinking blocks must be sent back unmodified, in order, after an unchanged system prompt, tools and "
    "earlier messages. See https://platform.claude.com/docs/en/build-with-claude/preserved-thinking/"
    "fix-bound-to-a-different-conversation"
)


@dataclass(frozen=True)
class ModelRules:
    types: tuple[str, ...]  # accepted thinking.type values
    default_effort: str
    default_type: str = "adaptive"


_RULES = {
    "claude-sonnet-5-5": ModelRules(("adaptive", "between_tools"), "high"),
    "claude-opus-5-5": ModelRules(("adaptive",), "medium"),
    "claude-haiku-5-5": ModelRules(("adaptive", "disabled"), "medium"),
}
# Models before 5.5 (and test ids): thinking is off unless asked for; every type is accepted.
_LEGACY = ModelRules(("adaptive", "between_tools", "disabled"), "high", default_type="disabled")


def rules_for(model: str) -> ModelRules:
    return _RULES.get(model, _LEGACY)


@dataclass(frozen=True)
class ThinkingPlan:
    type: str  # adaptive | between_tools | disabled
    display: str  # omitted | summarized | updates
    effort: str

    @property
    def thinks(self) -> bool:
        return self.type != "disabled"


def _betas(headers: dict[str, str]) -> set[str]:
    return {b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()}


def plan_for(body: dict[str, Any]) -> ThinkingPlan:
    """The thinking a (valid) request gets, defaults filled in per model."""
    rules = rules_for(str(body.get("model", "")))
    raw_thinking, raw_output = body.get("thinking"), body.get("output_config")
    thinking: dict[str, Any] = raw_thinking if isinstance(raw_thinking, dict) else {}
    output: dict[str, Any] = raw_output if isinstance(raw_output, dict) else {}
    return ThinkingPlan(type=str(thinking.get("type", rules.default_type)),
                        display=str(thinking.get("display", "omitted")),
                        effort=str(output.get("effort") or rules.default_effort))


def reasoning_tokens(plan: ThinkingPlan) -> int:
    """Reasoning before the answer: adaptive thinking only (between_tools thinks only between tools)."""
    return _REASONING_TOKENS[plan.effort] if plan.type == "adaptive" else 0


def _check_config(body: dict[str, Any], headers: dict[str, str]) -> str | None:
    for name in ("temperature", "top_p", "top_k"):
        if name in body:
            return (f"{name}: Extra inputs are not permitted. Sampling parameters were removed in API version "
                    "2026-10-21; use `output_config.effort` to control how much the model thinks.")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        return ("tool_choice: forcing tool use (`any` or `tool`) is not supported with thinking. "
                "Use `auto` or `none`.")
    model = str(body.get("model", ""))
    rules = rules_for(model)
    output = body.get("output_config", {})
    effort = output.get("effort") if isinstance(output, dict) else None
    if effort is not None and effort not in EFFORTS:
        return "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"
    effort = effort or rules.default_effort
    thinking = body.get("thinking")
    if thinking is None:
        return None
    if not isinstance(thinking, dict):
        return "thinking: Input should be an object"
    kind = thinking.get("type")
    if kind == "enabled" or "budget_tokens" in thinking:
        return (f"thinking.type: `enabled` with `budget_tokens` is not supported on {model}. "
                "Use `thinking: {\"type\": \"adaptive\"}` and `output_config.effort` instead.")
    if kind not in ("adaptive", "between_tools", "disabled"):
        return "thinking.type: Input should be 'adaptive', 'between_tools' or 'disabled'"
    if kind not in rules.types:
        if kind == "disabled" and "between_tools" in rules.types:
            return (f"thinking.type: `disabled` is not supported on {model}. To think only between tool calls, "
                    "use `thinking: {\"type\": \"between_tools\"}`.")
        return f"thinking.type: {model} supports only {', '.join(f'`{t}`' for t in rules.types)}."
    if kind == "disabled" and effort in ("xhigh", "max"):
        return f"thinking.type: `disabled` is supported on {model} only at effort `high` or lower."
    if kind == "between_tools":
        if set(thinking) != {"type"}:
            return "thinking: `between_tools` takes no other field."
        if effort in ("xhigh", "max"):
            return "thinking.type: `between_tools` is supported only at effort `low`, `medium` or `high`."
    display = thinking.get("display", "omitted")
    if kind == "adaptive" and display not in DISPLAYS:
        return "thinking.display: Input should be 'omitted', 'summarized' or 'updates'"
    if display == "updates" and UPDATES_BETA not in _betas(headers):
        return f"thinking.display: `updates` requires the beta header `anthropic-beta: {UPDATES_BETA}`."
    return None


def _essential(block: dict[str, Any]) -> dict[str, Any]:
    """What binds: a block's content without cache_control (moving a breakpoint is not an edit)."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text")}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": block.get("input")}
    return {k: v for k, v in block.items() if k != "cache_control"}


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


class PrefixHash:
    """A running hash of a request's prefix in order; `sign` binds a thinking block to it."""

    def __init__(self, key: bytes, body: dict[str, Any]) -> None:
        self.key = key
        self.model = str(body.get("model", ""))
        self._h = hashlib.sha256()
        for tool in body.get("tools") or []:
            if isinstance(tool, dict):
                self._feed("tools", _essential(tool))
        for block in _as_blocks(body.get("system")):
            self._feed("system", _essential(block))

    def _feed(self, section: str, block: dict[str, Any]) -> None:
        self._h.update(f"{section}\x00{canonical_json(block)}\x01".encode())

    def add(self, role: str, block: dict[str, Any]) -> None:
        if block.get("type") not in ("thinking", "redacted_thinking"):
            self._feed(role, _essential(block))

    def sign(self, thinking: str) -> str:
        mac = hmac.new(self.key, f"{self.model}\x00{self._h.hexdigest()}\x00{thinking}".encode(), hashlib.sha256)
        return base64.b64encode(b"demo1" + mac.digest()).decode()


def paused_digest(content: list[dict[str, Any]]) -> str:
    """Identifies an answer returned with stop_reason pause_turn: sent back as-is, it may end a request."""
    return hashlib.sha256(canonical_json([_essential(b) for b in _as_blocks(content)]).encode()).hexdigest()


def _check_messages(key: bytes, body: dict[str, Any], plan: ThinkingPlan, paused: set[str]) -> str | None:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if messages and messages[-1].get("role") == "assistant" and paused_digest(
            _as_blocks(messages[-1].get("content"))) not in paused:
        return ("This model does not support assistant message prefill. "
                "The conversation must end with a user message.")
    prefix = PrefixHash(key, body)
    for i, message in enumerate(messages):
        role = str(message.get("role"))
        for j, block in enumerate(_as_blocks(message.get("content"))):
            if block.get("type") == "thinking":
                if "cache_control" in block:
                    return f"messages.{i}.content.{j}.cache_control: cache_control cannot be set on a thinking block."
                signature = block.get("signature")
                thinking = block.get("thinking")
                if not isinstance(signature, str) or not isinstance(thinking, str) or not hmac.compare_digest(
                        signature, prefix.sign(thinking)):
                    return (f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block. The block is "
                            f"bound to a different conversation. {_SIGNATURE_HELP}")
            prefix.add(role, block)
    # Inside a tool-use turn the thinking of the assistant message that made the calls is required.
    if plan.thinks and len(messages) >= 2:
        last, answer = _as_blocks(messages[-1].get("content")), _as_blocks(messages[-2].get("content"))
        if any(b.get("type") == "tool_result" for b in last) and any(b.get("type") == "tool_use" for b in answer) \
                and not any(b.get("type") == "thinking" for b in answer):
            return (f"messages.{len(messages) - 2}.content: the assistant turn that made these tool calls must be "
                    "sent back with its `thinking` blocks, unmodified (preserved thinking is required inside a "
                    "tool-use turn).")
    return None


def check_thinking(key: bytes, body: dict[str, Any], headers: dict[str, str],
                   paused: set[str] | None = None) -> str | None:
    """Why the 5.x API would refuse this body (400), or None. `paused`: digests of answers this server
    returned with pause_turn (continuing one is not a prefill)."""
    return _check_config(body, headers) or _check_messages(key, body, plan_for(body), paused or set())


def progress_text(plan: ThinkingPlan, tool: str) -> str:
    return "" if plan.display == "omitted" else f"Next I'll use {tool}."


def reasoning_text(plan: ThinkingPlan, tokens: int) -> str:
    if plan.display != "summarized" or tokens <= 0:
        return ""
    unit = "Working out what the user needs and how to answer it. "
    text = unit * (tokens * 4 // len(unit) + 1)
    return text[: tokens * 4]


def thinking_tokens(text: str, planned: int) -> int:
    return max(planned, estimate_tokens(text))
