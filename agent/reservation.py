"""Prompt tokens a chat call reserves for: the API's free count_tokens plus a margin, once per turn.

The first call of a turn asks count_tokens (same system, tools, messages and thinking as the call). The
follow-up call of the same turn, after tool results, is sized from what is already known exactly instead
of a second round trip: the previous call's billed prompt, its output (the assistant message, thinking
included, is now input) and ceil(UTF-8 bytes / 2.5) of what was appended since. Only when the previous
call of this turn, made by this process, ended with usage and the new request starts with exactly what
that call sent (same model, thinking, effort, system and tools; breakpoints ignored). Otherwise it counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from agent.config import Settings
from agent.context import ModelRequest
from agent.model import ModelClient
from agent.thread_model import ModelChoice
from store.usage import TokenUsage

log = logging.getLogger("tollgate.context")

COUNT_SLACK_TOKENS = 16  # on top of the percentage margin: a tiny prompt's count rounds the other way too
FOLLOW_UP_STOPS = ("tool_use", "pause_turn")  # the stops after which the turn makes another call
# What was appended since the previous call is sized by bytes, which a token-dense result (rare scripts, emoji,
# random base64 at one token a byte or so) can beat: past this many estimated tokens, the follow-up counts.
FOLLOW_UP_MAX_ADDED_TOKENS = 2_000


@dataclass(frozen=True)
class BilledCall:
    """What a completed chat call leaves to size the next call of its turn."""

    turn_id: str
    key: str  # digest of model, thinking, effort, system and tools
    sent: int  # messages it sent
    sent_digest: str  # digest of those messages, without cache_control
    prompt_tokens: int  # billed: input + cache reads + cache writes
    output_tokens: int


def _blocks(blocks: Any) -> Any:
    """Blocks without their cache_control: the breakpoints move to the newest message every call."""
    if not isinstance(blocks, list):
        return blocks
    return [{k: v for k, v in b.items() if k != "cache_control"} if isinstance(b, dict) else b for b in blocks]


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _messages_digest(messages: list[dict[str, Any]]) -> str:
    return _digest([{**m, "content": _blocks(m.get("content"))} for m in messages])


def _call_key(request: ModelRequest, choice: ModelChoice) -> str:
    return _digest({"model": choice.model, "thinking": choice.thinking_config(), "effort": choice.effort,
                    "system": _blocks(request.system), "tools": _blocks(request.tools)})


def byte_estimate(value: Any) -> int:
    """ceil(UTF-8 bytes of its JSON / 2.5): the fallback's upper bound for the 5.x tokenizer on English text."""
    return -(-len(json.dumps(value, ensure_ascii=False).encode()) * 2 // 5)


def follow_up_tokens(last: BilledCall | None, turn_id: str, request: ModelRequest, choice: ModelChoice) -> int | None:
    """The follow-up's prompt size from the previous call's bill, or None when that is not known to be safe:
    another turn, another model/thinking/effort/system/tools (a user's MCP tools can change mid-turn), or
    messages that do not start with exactly what the previous call sent (a summary, dropped thinking)."""
    messages = request.messages
    if last is None or last.turn_id != turn_id or not turn_id or len(messages) <= last.sent:
        return None
    if messages[last.sent].get("role") != "assistant" or last.key != _call_key(request, choice):
        return None
    if _messages_digest(messages[:last.sent]) != last.sent_digest:
        return None
    added = byte_estimate(messages[last.sent + 1:])
    if added > FOLLOW_UP_MAX_ADDED_TOKENS:
        return None
    # The answer goes back as input: its billed output, or its bytes if that is more (rebuilt JSON, "(no answer)").
    answer = max(last.output_tokens, byte_estimate(messages[last.sent]))
    return last.prompt_tokens + answer + added


def with_margin(tokens: int, margin_pct: int) -> int:
    return -(-tokens * (100 + margin_pct) // 100) + COUNT_SLACK_TOKENS


class PromptSizer:
    """Sizes each chat call's prompt reservation; remembers each thread's last billed call for its follow-up."""

    def __init__(self, settings: Settings, model: ModelClient) -> None:
        self.settings, self.model = settings, model
        self.count_latencies_ms: deque[float] = deque(maxlen=1_000)  # count_tokens calls (bench/, tests)
        self.count_fallbacks = 0  # reservations sized by the byte estimate because counting failed
        self.follow_ups = 0  # reservations sized from the previous call's bill, without a count
        self._billed: dict[str, BilledCall] = {}  # thread: its last call, if it may have a follow-up

    async def tokens(self, thread_id: str, turn_id: str, request: ModelRequest, choice: ModelChoice) -> tuple[int, str]:
        """(prompt tokens a chat call reserves for, the count's refusal or ""): the follow-up's known size or
        the API's count, plus a margin; the byte estimate when counting is off, fails or is slow. Never raises."""
        s = self.settings
        # Used once: a call that made no record since (it failed, or was retried) leaves nothing to reuse.
        last = self._billed.pop(thread_id, None)
        if not s.count_tokens_enabled:
            return request.estimated_tokens(), ""
        # No count, so no stale-thinking check: none is needed, since this call resends exactly the prefix the
        # previous call of this turn sent and the API accepted, and thinking of this turn is never stale.
        known = follow_up_tokens(last, turn_id, request, choice)
        if known is not None:
            self.follow_ups += 1
            return with_margin(known, s.count_tokens_margin_pct), ""
        started = time.perf_counter()
        counted = await self.model.count_tokens(model=choice.model, system=request.system, tools=request.tools,
                                                messages=request.messages, thinking=choice.thinking_config(),
                                                effort=choice.effort, timeout_s=s.count_tokens_timeout_s)
        self.count_latencies_ms.append((time.perf_counter() - started) * 1000)
        if counted.tokens is None:
            self.count_fallbacks += 1
            log.warning("count_tokens failed, refused or timed out: reserving by the byte estimate")
            return request.estimated_tokens(), counted.refusal
        return with_margin(counted.tokens, s.count_tokens_margin_pct), ""

    def observe(self, thread_id: str, turn_id: str, request: ModelRequest, choice: ModelChoice, usage: TokenUsage,
                stop_reason: str) -> None:
        """A chat call completed with usage: keep what sizes its follow-up, if the turn goes on."""
        self._billed.pop(thread_id, None)
        if stop_reason not in FOLLOW_UP_STOPS or not turn_id or usage.prompt_tokens <= 0 \
                or not self.settings.count_tokens_enabled:
            return
        self._billed[thread_id] = BilledCall(turn_id=turn_id, key=_call_key(request, choice),
                                             sent=len(request.messages),
                                             sent_digest=_messages_digest(request.messages),
                                             prompt_tokens=usage.prompt_tokens, output_tokens=usage.output_tokens)
        while len(self._billed) > 2_000:
            self._billed.pop(next(iter(self._billed)))
