"""A deployment's own tools, loaded with TOLLGATE_TOOL_MODULES=tests.tool_module_example (see README)."""

from __future__ import annotations

from tools import ToolContext, tool


@tool()
async def word_count(ctx: ToolContext, text: str) -> str:
    """Count the words in a text."""
    return str(len(text.split()))


@tool(side_effect=True, risk="Files a ticket in the team's tracker.")
async def file_ticket(ctx: ToolContext, title: str, priority: int = 3) -> str:
    """File a ticket."""
    return f"filed {title!r} at priority {priority} for {ctx.user}"
