"""Values handed out by the store: plain frozen dataclasses that carry no database row ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


@dataclass(frozen=True)
class Thread:
    id: str
    owner: str
    title: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class StoredMessage:
    seq: int
    role: str
    content: list[dict[str, Any]]
    incomplete: bool
    created_at: float


@dataclass(frozen=True)
class Approval:
    id: str
    thread_id: str
    owner: str
    tool_use_id: str
    tool: str
    args: dict[str, Any]
    args_digest: str
    risk: str
    untrusted_sources: tuple[str, ...]
    route: str
    status: str
    requested_at: float
    expires_at: float
    decided_at: float | None
    decided_by: str | None
    reason: str | None
    executed: bool
    decided_via: str | None = None  # chat | console | always | system
    thread_deleted: bool = False  # its owner deleted the thread: only operators still see it


@dataclass(frozen=True)
class ToolOutcome:
    tool_use_id: str
    tool: str
    args: dict[str, Any]
    status: str  # running | done | error
    output: str
    is_error: bool
    duration_ms: float | None
