"""A small offline task list as an MCP server (stdio), backed by one SQLite file: the demo's bundled example.

Run by Tollgate from examples/mcp.toml (`make run`): TASKS_DB names the file (default data/tasks.sqlite).
It is a shared team list: every user's session reaches the same file.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

mcp = FastMCP("tasks")
DB = Path(os.environ.get("TASKS_DB", "data/tasks.sqlite"))


def _db() -> sqlite3.Connection:
    DB.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(DB)
    conn.execute("CREATE TABLE IF NOT EXISTS task (id INTEGER PRIMARY KEY, title TEXT NOT NULL, "
                 "done INTEGER NOT NULL DEFAULT 0)")
    return conn


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
def list_tasks(include_done: bool = False) -> str:
    """List the tasks on the team's task list (open ones unless include_done)."""
    with _db() as conn:
        rows = conn.execute("SELECT id, title, done FROM task WHERE done = 0 OR ? ORDER BY id",
                            (include_done,)).fetchall()
    if not rows:
        return "No tasks."
    return "\n".join(f"#{i} [{'x' if d else ' '}] {t}" for i, t, d in rows)


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False))
def add_task(title: str) -> str:
    """Add a task to the team's task list."""
    title = " ".join(title.split())[:200]
    if not title:
        raise ValueError("title must not be empty")
    with _db() as conn:
        task_id = conn.execute("INSERT INTO task (title) VALUES (?)", (title,)).lastrowid
    return f"Added task #{task_id}: {title}"


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True))
def complete_task(id: int) -> str:
    """Mark a task as done."""
    with _db() as conn:
        changed = conn.execute("UPDATE task SET done = 1 WHERE id = ?", (id,)).rowcount
    if not changed:
        raise ValueError(f"no task #{id}")
    return f"Task #{id} is done."


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
def delete_task(id: int) -> str:
    """Delete a task from the list for good."""
    with _db() as conn:
        changed = conn.execute("DELETE FROM task WHERE id = ?", (id,)).rowcount
    if not changed:
        raise ValueError(f"no task #{id}")
    return f"Deleted task #{id}."


if __name__ == "__main__":
    mcp.run("stdio")
