"""What an Agent is built from: the store, the settings, the model, the tools and the budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    # Tools of one user alone (servers they connected themselves, tools/mcp/user_servers.py): listed and callable
    # only in that user's turns, never in `registry`, which every user shares.
    user_tools: Callable[[str], Sequence[Tool]] = lambda owner: ()

    def registry_for(self, owner: str) -> ToolRegistry:
        """The shared registry itself for a user without tools of their own: the same tools block, byte for byte."""
        own = [t for t in self.user_tools(owner) if t.name not in self.registry]  # the shared name wins
        return ToolRegistry([*self.registry, *own]) if own else self.registry
