"""Tables that let several app processes share one database (README "Past one machine"): who is alive,
who runs a thread's turn, which process holds the browser watching a thread, and resumes that are due.
New tables only: an existing data dir gets them from create_all."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table
from sqlmodel import Field, SQLModel


class AppProcessRow(SQLModel, table=True):
    """One running app process. Alive while `heartbeat_at` is recent; a sweeper in any live process
    closes the work of one whose heartbeat stopped (and only then)."""

    __tablename__ = "app_processes"
    id: str = Field(primary_key=True)  # random per start: also the prefix of its reservation keys
    host: str
    pid: int
    started_at: float
    heartbeat_at: float = Field(index=True)


class ThreadLeaseRow(SQLModel, table=True):
    """One turn at a time per thread across processes. `holder` NULL: free. A lease of a process that is
    no longer alive may be taken over; `epoch` grows with every acquisition (fencing: a release or a
    check by a former holder matches no row)."""

    __tablename__ = "thread_leases"
    thread_id: str = Field(primary_key=True)
    holder: str | None = None
    epoch: int = 0
    acquired_at: float = 0.0


class ThreadWatcherRow(SQLModel, table=True):
    """The process whose browser socket last opened this thread: a resume runs there, live."""

    __tablename__ = "thread_watchers"
    thread_id: str = Field(primary_key=True)
    process_id: str = Field(index=True)
    at: float


class DueResumeRow(SQLModel, table=True):
    """A thread to resume at `due_at`: an approval's deadline, or now (a decision taken elsewhere).
    Claimed once by a conditional UPDATE; `version` grows with every (re)arm so a finished claim never
    deletes a newer request."""

    __tablename__ = "due_resumes"
    thread_id: str = Field(primary_key=True)
    owner: str
    due_at: float = Field(index=True)
    version: int = 0
    claimed_by: str | None = None
    claimed_until: float = 0.0


APP_PROCESSES = cast(Table, AppProcessRow.__table__)  # type: ignore[attr-defined]
THREAD_LEASES = cast(Table, ThreadLeaseRow.__table__)  # type: ignore[attr-defined]
THREAD_WATCHERS = cast(Table, ThreadWatcherRow.__table__)  # type: ignore[attr-defined]
DUE_RESUMES = cast(Table, DueResumeRow.__table__)  # type: ignore[attr-defined]
