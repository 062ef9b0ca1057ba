"""What the agent loop reports while it works. The UI renders these; the loop never knows the UI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from store.values import Approval


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer. `answer_id`: the answer's id in the chat's history (one per model call): the
    message that shows it takes this id, so the agent's kept versions and the final one are one entry."""

    text: str
    answer_id: str = ""


@dataclass(frozen=True)
class ThinkingDelta:
    """The model is thinking: `text` is "" when a thinking block starts (show a "thinking…" state), then
    each visible piece of it. `block` is the block's index in the answer: a new index, a new step."""

    text: str
    block: int = 0


@dataclass(frozen=True)
class AssistantMessageDone:
    """The model's text for one call is complete (or was cut: `incomplete`)."""

    text: str
    incomplete: bool = False


@dataclass(frozen=True)
class AnswerKept:
    """The answer streamed so far is in the store (marked incomplete until it finishes)."""

    text: str


@dataclass(frozen=True)
class ToolStarted:
    tool_use_id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class ApprovalRequested:
    approval: Approval
    thread_cost_usd: str = ""  # what the thread has cost so far, for the card
    left_today_usd: str = ""
    can_always: bool = False  # "approve always" may be offered (not high-risk, user-routed, untainted thread)
    always_suspended: bool = False  # the user chose "always", but untrusted content is in context


@dataclass(frozen=True)
class ApprovalResolved:
    approval: Approval


@dataclass(frozen=True)
class ToolFinished:
    tool_use_id: str
    name: str
    input: dict[str, Any]
    output: str
    is_error: bool
    duration_ms: float


@dataclass(frozen=True)
class ContextCompressed:
    messages_summarised: int
    tokens_before: int
    tokens_after: int


@dataclass(frozen=True)
class Notice:
    """Something the user must be told: a budget stop, a cut answer, an API error, a refusal."""

    kind: str  # budget | max_tokens | refusal | api_error | call_cap | cancelled | info
    message: str
    retryable: bool = False
    continuable: bool = False  # the answer was cut (max_tokens, context window): "Continue" asks for the rest


@dataclass(frozen=True)
class UsageReport:
    """Per-answer accounting shown after each assistant answer."""

    input_tokens: int
    output_tokens: int
    cache_read_share: float
    answer_cost_usd: str
    thread_cost_usd: str
    today_usd: str
    daily_limit_usd: str
    model_calls: int


@dataclass(frozen=True)
class TurnFinished:
    stop_reason: str
    usage: UsageReport | None = None
    notices: tuple[Notice, ...] = field(default_factory=tuple)


AgentEvent: TypeAlias = (TextDelta | ThinkingDelta | AssistantMessageDone | AnswerKept | ToolStarted | ApprovalRequested
                         | ApprovalResolved | ToolFinished | ContextCompressed | Notice | UsageReport | TurnFinished)
EventSink: TypeAlias = Callable[[AgentEvent], Awaitable[None]]
