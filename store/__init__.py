"""Persistence: SQLModel tables behind narrow, keyword-only async functions scoped by owner."""

from store.db import Database
from store.values import Approval, StoredMessage, Thread, ToolOutcome, User

__all__ = ["Approval", "Database", "StoredMessage", "Thread", "ToolOutcome", "User"]
