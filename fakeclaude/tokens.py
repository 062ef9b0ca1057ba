"""The demo model's token estimator and the prompt flattening shared by accounting and count_tokens.

The estimator is deliberately simple and fixed (ceil(chars / 4)) so that every number the demo server
reports can be recomputed by hand in a test or a benchmark; it is not Claude's tokenizer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["PromptBlock", "canonical_json", "estimate_tokens", "prompt_blocks", "request_prompt_tokens"]


def estimate_tokens(text: str) -> int:
    """ceil(len(text) / 4) characters, so any non-empty text is at least 1 token; "" is 0."""
    return math.ceil(len(text) / 4)


def canonical_json(value: Any) -> str:
    """Stable JSON (sorted keys, no spaces, UTF-8 kept) so equal content always gives equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class PromptBlock:
    """One cacheable unit of a request, in cache order (tools, then system, then messages)."""

    section: str  # "tools", "system", "user" or "assistant": part of the identity, not of the count
    text: str  # canonical JSON of the block without its cache_control field
    tokens: int
    cache_ttl: str | None  # "5m" / "1h" when the block carries cache_control, else None


def _without_cache_control(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "cache_control"}


def _ttl(block: dict[str, Any]) -> str | None:
    control = block.get("cache_control")
    if not isinstance(control, dict):
        return None
    ttl = control.get("ttl", "5m")
    return ttl if isinstance(ttl, str) else "5m"


def _make(section: str, block: dict[str, Any]) -> PromptBlock:
    text = canonical_json(_without_cache_control(block))
    return PromptBlock(section, text, estimate_tokens(text), _ttl(block))


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    # A plain-string content (or system) is one text block, exactly as the API treats it.
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def prompt_blocks(request: dict[str, Any]) -> list[PromptBlock]:
    """Flatten a /v1/messages body into blocks: each tool, each system block, each message block."""
    blocks = [_make("tools", t) for t in request.get("tools") or [] if isinstance(t, dict)]
    blocks += [_make("system", b) for b in _as_blocks(request.get("system"))]
    for message in request.get("messages") or []:
        if isinstance(message, dict):
            role = str(message.get("role", ""))
            blocks += [_make(role, b) for b in _as_blocks(message.get("content"))]
    return blocks


def request_prompt_tokens(request: dict[str, Any]) -> int:
    """Total prompt tokens = sum over prompt_blocks; equals input + cache_creation + cache_read."""
    return sum(b.tokens for b in prompt_blocks(request))
