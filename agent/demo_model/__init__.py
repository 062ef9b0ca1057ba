"""An offline, scripted, deterministic Anthropic Messages API server for demos, tests and benchmarks."""

from .accounting import CacheUsage, PromptCache, default_min_cacheable_tokens
from .brains import (
    HELP_TEXT,
    Brain,
    DemoBrain,
    Fault,
    Reply,
    ScriptedBrain,
    TextBlock,
    ToolUseBlock,
    find_injected_goal,
)
from .server import DemoModelServer, DemoSettings
from .tokens import estimate_tokens

__all__ = [
    "HELP_TEXT",
    "Brain",
    "CacheUsage",
    "DemoBrain",
    "DemoModelServer",
    "DemoSettings",
    "Fault",
    "PromptCache",
    "Reply",
    "ScriptedBrain",
    "TextBlock",
    "ToolUseBlock",
    "default_min_cacheable_tokens",
    "estimate_tokens",
    "find_injected_goal",
]
