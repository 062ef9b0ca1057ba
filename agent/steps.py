"""What happens next in a turn, as small typed data (in the style of openai-agents' next-step classes).

A tool batch ends `Ran` (every call has its result) or `Suspended` (an approval is still pending);
the loop's next step is `NextCall` (call the model again), `Suspended`, `Finished` (the model is done)
or `Stopped` (a guard ended the turn: budget, call cap, error, a new user message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True)
class Ran:
    """Every tool_use of the batch has its tool_result, in order; `superseded`: the user moved on."""
    results: tuple[dict[str, Any], ...]
    superseded: bool = False


@dataclass(frozen=True)
class Suspended:
    """Approvals are pending: nothing more runs until they are decided (or expire at `until`)."""
    approval_ids: tuple[str, ...]
    until: float


BatchOutcome: TypeAlias = Ran | Suspended


@dataclass(frozen=True)
class NextCall:
    """Call the model again (tool results were added, or it paused)."""


@dataclass(frozen=True)
class Finished:
    """The model finished its answer (end_turn, refusal, a cut answer)."""
    stop_reason: str


@dataclass(frozen=True)
class Stopped:
    """A guard ended the turn; `reason` is the turn's stop_reason (budget, call_cap, api_error, superseded)."""
    reason: str


NextStep: TypeAlias = NextCall | Suspended | Finished | Stopped
