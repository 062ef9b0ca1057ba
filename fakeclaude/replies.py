"""What a brain answers: the content blocks of one model turn, its stop reason and an optional fault."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Brain", "Fault", "Reply", "TextBlock", "ToolUseBlock"]


@dataclass(frozen=True)
class TextBlock:
    text: str


@dataclass(frozen=True)
class ToolUseBlock:
    name: str
    input: dict[str, Any]
    id: str | None = None  # the server assigns "toolu_demo_<n>_<salt>" when None


@dataclass(frozen=True)
class Fault:
    """An injected failure.

    http: the request is answered with `status` and an error body (no content is streamed).
    sse_error / cut: a 200 stream starts; after `after_blocks` complete content blocks the server sends
    an `event: error` (sse_error) or drops the connection without message_stop (cut). If the next block
    is text, its start and the first half of its deltas (at least one) go out first, so the failure
    lands mid-text; use an empty `blocks` for a failure right after message_start.
    """

    kind: Literal["http", "sse_error", "cut"]
    status: int = 500
    error_type: str = "api_error"
    message: str = "injected fault"
    after_blocks: int = 0


@dataclass(frozen=True)
class Reply:
    blocks: tuple[TextBlock | ToolUseBlock, ...] = ()
    stop_reason: str = "end_turn"
    fault: Fault | None = None
    usage_override: dict[str, int] | None = None  # merged over the computed usage, e.g. output_tokens
    stop_details: dict[str, Any] | None = None  # for a refusal: {type, category, explanation}


class Brain(Protocol):
    def respond(self, request: dict[str, Any]) -> Reply: ...
