"""Tables. One schema, owned and created by the project (no chainlit tables).

Times are UTC epoch seconds (float): comparable, sortable, and free of naive-datetime traps.
Money is integer nano-USD: exact for every published price (at most 3 decimals per million tokens).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import BigInteger, Column, Index, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class UserRow(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    password_hash: str
    role: str = "user"  # "user" | "operator"
    created_at: float


class ThreadRow(SQLModel, table=True):
    __tablename__ = "threads"
    __table_args__ = (Index("ix_threads_owner_updated", "owner_id", "updated_at"),)
    id: str = Field(primary_key=True)  # public uuid hex: appears in URLs, never guessable
    owner_id: int = Field(foreign_key="users.id", ondelete="CASCADE")
    title: str = ""
    created_at: float
    updated_at: float


class MessageRow(SQLModel, table=True):
    """One Messages-API message, content blocks stored exactly as sent or received."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("thread_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    thread_id: str = Field(foreign_key="threads.id", ondelete="CASCADE")
    seq: int
    role: str  # "user" | "assistant"
    content_json: str = Field(sa_column=Column(Text, nullable=False))
    incomplete: bool = False  # a half-streamed answer kept after an error or crash
    created_at: float


class ApprovalRow(SQLModel, table=True):
    """A side-effecting tool call and its decision: the only thing that lets such a tool run."""

    __tablename__ = "approvals"
    # tool_use ids are the model's: unique per thread is all we rely on (a demo server restarts its count).
    __table_args__ = (Index("ix_approvals_thread_status", "thread_id", "status"),
                      UniqueConstraint("thread_id", "tool_use_id"))
    id: str = Field(primary_key=True)  # public uuid hex, carried by the card's buttons
    thread_id: str = Field(foreign_key="threads.id", ondelete="CASCADE")
    tool_use_id: str
    tool: str
    args_json: str = Field(sa_column=Column(Text, nullable=False))
    args_digest: str
    risk: str = ""
    untrusted_sources_json: str = "[]"
    route: str = "user"  # who must decide: "user" | "operator"
    status: str = "pending"  # pending | approved | rejected | expired
    requested_at: float
    expires_at: float
    decided_at: float | None = None
    decided_by: str | None = None
    decided_via: str | None = None  # "chat" | "console" | "system"
    reason: str | None = None
    executed_at: float | None = None  # set once, atomically, just before the tool runs


class ToolCallRow(SQLModel, table=True):
    """Outcome of every tool call (read-only or not); full output kept here, the UI shows a cut."""

    __tablename__ = "tool_calls"
    __table_args__ = (UniqueConstraint("thread_id", "tool_use_id"),)
    id: int | None = Field(default=None, primary_key=True)
    thread_id: str = Field(foreign_key="threads.id", ondelete="CASCADE", index=True)
    tool_use_id: str
    tool: str
    args_json: str = Field(sa_column=Column(Text, nullable=False))
    status: str = "running"  # running | done | error
    output: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    is_error: bool = False
    started_at: float
    duration_ms: float | None = None


class ModelCallRow(SQLModel, table=True):
    """A model call: its budget reservation first, then its settled usage and cost."""

    __tablename__ = "model_calls"
    __table_args__ = (
        Index("ix_model_calls_user_day", "user_id", "day"),
        Index("ix_model_calls_day", "day"),
        Index("ix_model_calls_thread", "thread_id"),
        Index("ix_model_calls_turn", "turn_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)  # opaque handle given to the caller instead of the row id
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE")
    thread_id: str | None = None
    turn_id: str = ""
    model: str
    purpose: str = "chat"  # chat | summary
    status: str = "reserved"  # reserved | settled | released
    reserved_nanousd: int = Field(default=0, sa_type=BigInteger)  # money: 64-bit (PostgreSQL's INTEGER is 32)
    cost_nanousd: int = Field(default=0, sa_type=BigInteger)
    reserved_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    stop_reason: str | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    created_at: float
    day: str  # UTC calendar day "YYYY-MM-DD", for per-day limits
    month: str  # "YYYY-MM"


class BudgetRow(SQLModel, table=True):
    """Per-user limits set by an operator; NULL means the configured default applies."""

    __tablename__ = "budgets"
    user_id: int = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    daily_nanousd: int | None = Field(default=None, sa_type=BigInteger)
    monthly_nanousd: int | None = Field(default=None, sa_type=BigInteger)


class EstimateMarginRow(SQLModel, table=True):
    """Calls a user was billed above their reservation, and the prompt-estimate margin that followed.

    A table of its own (create_all adds tables, never columns): an existing data dir keeps working."""

    __tablename__ = "estimate_margins"
    user_id: int = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    overruns: int = 0  # calls that cost more than they reserved
    overrun_nanousd: int = Field(default=0, sa_type=BigInteger)  # by how much: spend the limits did not foresee
    factor_milli: int = 1000  # the next prompt estimates are multiplied by this / 1000
    updated_at: float = 0.0


class UIStepRow(SQLModel, table=True):
    """A chat step as chainlit rendered it (message, tool step, card): the history view only."""

    __tablename__ = "ui_steps"
    __table_args__ = (Index("ix_ui_steps_thread_seq", "thread_id", "seq"),)
    id: str = Field(primary_key=True)  # chainlit's step id
    thread_id: str = Field(foreign_key="threads.id", ondelete="CASCADE")
    seq: float  # arrival order
    parent_id: str | None = None
    name: str = ""
    type: str = ""
    input: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    output: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    is_error: bool = False
    created_at: str | None = None
    start: str | None = None
    end: str | None = None
    show_input: str | None = None
    language: str | None = None
    metadata_json: str = "{}"


class ContextSummaryRow(SQLModel, table=True):
    """The model's summary of a thread's middle: stands in for messages up to `covers_to_seq` in the
    model's context only (the messages themselves stay). The newest row per thread is the one in use."""

    __tablename__ = "context_summaries"
    __table_args__ = (Index("ix_context_summaries_thread", "thread_id", "covers_to_seq"),)
    id: int | None = Field(default=None, primary_key=True)
    thread_id: str = Field(foreign_key="threads.id", ondelete="CASCADE")
    covers_to_seq: int
    messages: int  # stored messages it stands for
    text: str = Field(sa_column=Column(Text, nullable=False))
    tokens: int  # estimated tokens of the summary block
    model: str
    created_at: float


class AlwaysApproveRow(SQLModel, table=True):
    """A user's "approve always" for one tool in one thread (never for high-risk tools)."""

    __tablename__ = "always_approve"
    thread_id: str = Field(foreign_key="threads.id", primary_key=True, ondelete="CASCADE")
    tool: str = Field(primary_key=True)
    created_at: float


class ThreadDeletionRow(SQLModel, table=True):
    """A thread its owner deleted: hidden from the owner, its records kept for operators until a purge.

    A table of its own, not a column on `threads`: create_all adds new tables to an existing database."""

    __tablename__ = "thread_deletions"
    thread_id: str = Field(foreign_key="threads.id", primary_key=True, ondelete="CASCADE")
    deleted_at: float = Field(index=True)
    deleted_by: str


class PurgeRow(SQLModel, table=True):
    """One deliberate removal of deleted threads past the retention period: what went, for the audit."""

    __tablename__ = "purges"
    id: int | None = Field(default=None, primary_key=True)
    at: float
    by: str  # "cli" | "startup"
    older_than_days: float
    threads: int
    messages: int
    approvals: int
    tool_calls: int
    model_calls_detached: int


def _table(model: type[SQLModel]) -> Table:
    """The Core table behind a model: queries use Core statements, lighter than ORM sessions."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


USERS = _table(UserRow)
THREADS = _table(ThreadRow)
MESSAGES = _table(MessageRow)
APPROVALS = _table(ApprovalRow)
TOOL_CALLS = _table(ToolCallRow)
MODEL_CALLS = _table(ModelCallRow)
BUDGETS = _table(BudgetRow)
ESTIMATE_MARGINS = _table(EstimateMarginRow)
UI_STEPS = _table(UIStepRow)
CONTEXT_SUMMARIES = _table(ContextSummaryRow)
ALWAYS_APPROVE = _table(AlwaysApproveRow)
THREAD_DELETIONS = _table(ThreadDeletionRow)
PURGES = _table(PurgeRow)
