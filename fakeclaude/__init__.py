"""fakeclaude: an offline, scripted, deterministic Anthropic Messages API server (wire level, strict about
the API's rules) for tests and benchmarks; `fakeclaude.persona` is Tollgate's demo persona on top of it.
Run it alone with `python -m fakeclaude` (prints its base URL, stops when its stdin closes)."""

from .accounting import CacheUsage, PromptCache, default_min_cacheable_tokens
from .brains import Brain, Fault, Reply, ScriptedBrain, TextBlock, ToolUseBlock
from .persona import HELP_TEXT, DemoBrain, find_injected_goal
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
