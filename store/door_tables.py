"""Tables for logins and sessions, kept apart from store/models.py (new tables: an existing data dir gets
them from create_all, no migration)."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Index, Table
from sqlmodel import Field, SQLModel


class LoginFailureRow(SQLModel, table=True):
    """One refused login: counted per account name (as typed, existing or not) and per client address."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_account_at", "account", "at"),
                      Index("ix_login_failures_address_at", "address", "at"))
    id: int | None = Field(default=None, primary_key=True)
    account: str
    address: str
    at: float = Field(index=True)


class SessionCutoffRow(SQLModel, table=True):
    """Tokens of this user issued at or before `revoked_before` are refused (logout, removal, new password).
    Keyed by name, not by user id: it outlives the user row, so a removed user's tokens stay dead."""

    __tablename__ = "session_cutoffs"
    user_name: str = Field(primary_key=True)
    revoked_before: float


LOGIN_FAILURES = cast(Table, LoginFailureRow.__table__)  # type: ignore[attr-defined]
SESSION_CUTOFFS = cast(Table, SessionCutoffRow.__table__)  # type: ignore[attr-defined]
