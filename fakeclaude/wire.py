"""Pure builders for the Messages API wire format: message JSON, usage, error bodies, SSE event plans."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .accounting import CacheUsage
from .replies import Fault
from .tokens import canonical_json, estimate_tokens

__all__ = [
    "SseEvent",
    "StreamPlan",
    "error_body",
    "message_json",
    "output_tokens",
    "plan_stream",
    "usage_json",
]


def output_tokens(content: list[dict[str, Any]]) -> int:
    """Estimator over each text plus the canonical JSON of each tool input."""
    total = 0
    for block in content:
        if block["type"] == "text":
            total += estimate_tokens(block["text"])
        elif block["type"] == "tool_use":
            total += estimate_tokens(canonical_json(block["input"]))
    return total


def usage_json(cache: CacheUsage, output: int, override: dict[str, int] | None = None,
               thinking: int = 0) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": cache.input_tokens,
        "output_tokens": output,
        "output_tokens_details": {"thinking_tokens": thinking},
        "cache_creation_input_tokens": cache.cache_creation_input_tokens,
        "cache_read_input_tokens": cache.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.ephemeral_5m_input_tokens,
            "ephemeral_1h_input_tokens": cache.ephemeral_1h_input_tokens,
        },
    }
    for key, value in (override or {}).items():
        if key in usage["cache_creation"]:
            usage["cache_creation"][key] = value
        else:
            usage[key] = value
    # Thinking is part of output_tokens, never more than it (an override may lower the total).
    usage["output_tokens_details"]["thinking_tokens"] = min(thinking, usage["output_tokens"])
    return usage


def message_json(
    message_id: str, model: str, content: list[dict[str, Any]], stop_reason: str | None, usage: dict[str, Any],
    stop_details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "stop_details": stop_details,
        "usage": usage,
    }


def error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: dict[str, Any]
    tokens: int = 0  # > 0 for a content delta: paced by the token rate
    text_delta: bool = False

    def encode(self) -> bytes:
        # The SDK skips events without an `event:` line, so both lines are always written.
        return f"event: {self.event}\ndata: {json.dumps(self.data, ensure_ascii=False)}\n\n".encode()


@dataclass
class StreamPlan:
    events: list[SseEvent] = field(default_factory=list)
    ending: str = "complete"  # "complete", "error" (events end with an error event) or "cut"


def _text_chunks(text: str, max_delta_tokens: int) -> list[str]:
    size = max(1, max_delta_tokens) * 4  # each chunk is at most max_delta_tokens estimated tokens
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _json_pieces(payload: str, max_delta_tokens: int) -> list[str]:
    # Always at least two pieces, so clients must really accumulate partial JSON.
    count = max(2, math.ceil(estimate_tokens(payload) / max(1, max_delta_tokens)))
    size = max(1, math.ceil(len(payload) / count))
    return [payload[i : i + size] for i in range(0, len(payload), size)]


def _thinking_events(index: int, block: dict[str, Any], max_delta_tokens: int, hidden: int) -> list[SseEvent]:
    start = {"type": "thinking", "thinking": "", "signature": ""}
    deltas = [
        SseEvent("content_block_delta",
                 {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": c}},
                 max(1, estimate_tokens(c)))
        for c in (_text_chunks(block["thinking"], max_delta_tokens) if block["thinking"] else [])
    ]
    # Thinking not shown (omitted display) still takes its time: the signature arrives after it.
    signature = {"type": "signature_delta", "signature": block["signature"]}
    deltas.append(SseEvent("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": signature}, max(1, hidden)))
    return [
        SseEvent("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
        *deltas,
        SseEvent("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def _block_events(index: int, block: dict[str, Any], max_delta_tokens: int, hidden: int = 0) -> list[SseEvent]:
    if block["type"] == "thinking":
        return _thinking_events(index, block, max_delta_tokens, hidden)
    if block["type"] == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [
            SseEvent(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": chunk},
                },
                max(1, estimate_tokens(chunk)),
                text_delta=True,
            )
            for chunk in _text_chunks(block["text"], max_delta_tokens)
        ]
    else:
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        deltas = [
            SseEvent(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": p},
                },
                max(1, estimate_tokens(p)),
            )
            for p in _json_pieces(canonical_json(block["input"]), max_delta_tokens)
        ]
    return [
        SseEvent("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
        *deltas,
        SseEvent("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def plan_stream(message: dict[str, Any], max_delta_tokens: int, fault: Fault | None = None,
                hidden_tokens: list[int] | None = None) -> StreamPlan:
    """The SSE events for `message` (a full message_json), cut short as `fault` says. A fault's
    `after_blocks` counts the brain's blocks (text, tool_use), not the thinking blocks around them."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    head = {**message, "content": [], "stop_reason": None, "usage": start_usage}
    plan = StreamPlan(
        [
            SseEvent("message_start", {"type": "message_start", "message": head}),
            SseEvent("ping", {"type": "ping"}),
        ]
    )
    blocks = message["content"]
    said = 0  # brain blocks streamed so far
    for index, block in enumerate(blocks):
        hidden = hidden_tokens[index] if hidden_tokens else 0
        events = _block_events(index, block, max_delta_tokens, hidden)
        if block["type"] == "thinking":
            plan.events += events
            continue
        said += 1
        if fault is not None and fault.kind != "http" and said > fault.after_blocks:
            if block["type"] == "text":
                deltas = len(events) - 2
                plan.events += events[: 1 + max(1, deltas // 2)]  # start + first half of the text
            break
        plan.events += events
    if fault is not None and fault.kind == "cut":
        plan.ending = "cut"
        return plan
    if fault is not None and fault.kind == "sse_error":
        plan.events.append(
            SseEvent("error", {"type": "error", "error": {"type": fault.error_type, "message": fault.message}})
        )
        plan.ending = "error"
        return plan
    delta_usage = {k: v for k, v in usage.items() if k != "cache_creation"}
    plan.events += [
        SseEvent(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None,
                          "stop_details": message.get("stop_details")},
                "usage": delta_usage,
            },
        ),
        SseEvent("message_stop", {"type": "message_stop"}),
    ]
    return plan
