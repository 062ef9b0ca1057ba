"""What an Agent is built from: the store, the settings, the model, the tools and the budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.budget import Budget
from agent.config import Settings
from agent.model import ModelClient
from agent.partial import AnswerHistory
from agent.trace import NULL_TRACE, TraceLog
from store.db import Database
from tools import FetchPolicy, Tool, ToolRegistry


@dataclass
class AgentDeps:
    db: Database
    settings: Settings
    model: ModelClient
    registry: ToolRegistry
    budget: Budget
    route_for: Callable[[Tool, dict[str, Any]], str] = lambda tool, args: "user"
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)
    trace: TraceLog = NULL_TRACE
    # The chat's history (ui/history.py): the agent keeps a streaming, cut or stopped answer there itself.
    history: AnswerHistory | None = None
