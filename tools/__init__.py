"""Tollgate's tools: the registry, the per-user workspace sandbox and the built-in tools.

Nothing here may import chainlit, agent, store or ui: tools are usable and testable on their own.
"""

from tools.errors import ToolArgumentError, ToolError
from tools.netguard import FetchPolicy
from tools.paths import normalise_path
from tools.registry import Tool, ToolContext, ToolRegistry, default_registry, tool
from tools.workspace import Workspace

__all__ = [
    "FetchPolicy",
    "Tool",
    "ToolArgumentError",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "Workspace",
    "default_registry",
    "normalise_path",
    "tool",
]
