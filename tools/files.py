"""The built-in workspace file tools. Every file access goes through ``ctx.workspace``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from pydantic import Field

from tools.errors import ToolError
from tools.registry import ToolContext, tool
from tools.workspace import Workspace

MAX_LIST_ENTRIES = 200
MAX_SEARCH_HITS = 50
MAX_SEARCH_LINE = 200
MAX_SEARCH_FILES = 2000

FilePath = Annotated[str, Field(description="Path relative to the root of your workspace, e.g. notes/todo.txt.")]


@tool()
async def list_files(
    ctx: ToolContext,
    path: Annotated[str, Field(description="Directory relative to your workspace root; '.' is the root.")] = ".",
) -> str:
    """List the files and folders in a directory of your workspace. Folders end with '/'."""
    entries = ctx.workspace.list_dir(path)
    if not entries:
        return f"(empty directory: {path})"
    lines = []
    for entry in entries[:MAX_LIST_ENTRIES]:
        if entry.kind == "dir":
            lines.append(entry.path + "/")
        elif entry.kind == "symlink":
            lines.append(f"{entry.path} (symlink, not followed)")
        else:
            lines.append(entry.path)
    if len(entries) > MAX_LIST_ENTRIES:
        lines.append(f"[{len(entries) - MAX_LIST_ENTRIES} more entries not shown]")
    return "\n".join(lines)


@tool()
async def read_file(ctx: ToolContext, path: FilePath) -> str:
    """Read a text file from your workspace. Large files are cut off with a visible marker."""
    result = ctx.workspace.read_capped(path)
    if result.truncated:
        marker = f"[truncated: showing first {result.shown_bytes} of {result.total_bytes} bytes]"
        return f"{result.text}\n{marker}"
    return result.text


def _search(workspace: Workspace, query: str) -> str:
    needle = query.casefold()
    hits: list[str] = []
    for rel in workspace.walk(max_files=MAX_SEARCH_FILES):
        try:
            text, _ = workspace.read_text(rel)
        except ToolError:
            continue  # binary, vanished or swapped for a symlink since the walk
        for number, line in enumerate(text.splitlines(), start=1):
            if needle in line.casefold():
                shown = line.strip()
                if len(shown) > MAX_SEARCH_LINE:
                    shown = shown[:MAX_SEARCH_LINE] + "…"
                hits.append(f"{rel}:{number}: {shown}")
                if len(hits) >= MAX_SEARCH_HITS:
                    hits.append(f"[stopped after {MAX_SEARCH_HITS} hits]")
                    return "\n".join(hits)
    return "\n".join(hits) if hits else f"no matches for {query!r}"


@tool()
async def search_files(
    ctx: ToolContext,
    query: Annotated[
        str,
        Field(description="Text to look for (case-insensitive substring).", min_length=1, max_length=200),
    ],
) -> str:
    """Search the text files in your workspace for a word or phrase; returns path:line: text hits."""
    # A thread keeps a large workspace from stalling the event loop; it is read-only, so abandoning
    # it on timeout is harmless.
    return await asyncio.to_thread(_search, ctx.workspace, query)


@tool(
    side_effect=True,
    risk="Creates or overwrites a file in your workspace.",
    trusted_output=True,
)
async def write_file(
    ctx: ToolContext,
    path: FilePath,
    content: Annotated[str, Field(description="The complete new text content of the file.")],
) -> str:
    """Create a text file in your workspace, or replace an existing file's content entirely."""
    written = ctx.workspace.write_text(path, content)
    return f"wrote {written} bytes to {path}"


@tool(
    side_effect=True,
    high_risk=True,
    risk="Permanently deletes a file from your workspace.",
    trusted_output=True,
)
async def delete_file(ctx: ToolContext, path: FilePath) -> str:
    """Delete a file from your workspace. This cannot be undone."""
    ctx.workspace.delete(path)
    return f"deleted {path}"
