"""Fencing the writes of a thread's turn with its lease (store/cluster.py, agent/leases.py).

A process that stalled past `dead_after_s` (a pause, a frozen VM) loses its thread leases to a peer, but it
does not know that until it next asks the database. Its turn may wake up mid-way and write. So the writes
whose doubling would do harm name the lease they were made under, and the write transaction first checks
that this lease (thread, holder, epoch) is still the current one; otherwise nothing is written (LeaseLost).

Which writes, and why only these (README "Past one machine"):
- starting a tool (`approvals.start_tool_call`) and claiming an approved side effect (`claim_execution`):
  every tool run starts with these, so a former holder runs no tool, and an approval it would have burned
  stays with the current holder: no tool runs twice.
- appending to the thread's history (`threads.append_message`, `finish_message`; a streamed answer's
  partial row too): a former holder cannot add results or answers after its successor's: no forked history.
Not fenced, on purpose: finishing a tool call that already ran (its outcome is a fact; the successor replays
it instead of re-running), and settling a model call's cost (money spent is charged whoever spent it).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from store.cluster_tables import THREAD_LEASES

_lease = THREAD_LEASES


@dataclass(frozen=True)
class Fence:
    """The lease a turn runs under: a write made with it is refused once another acquisition happened."""

    thread_id: str
    holder: str
    epoch: int


class LeaseLost(RuntimeError):
    """The turn's lease was taken over (its process had been declared dead): its write was refused."""


def require_lease(conn: Connection, fence: Fence | None) -> None:
    """Inside a write transaction, before the write. The lease row is locked (FOR UPDATE on PostgreSQL) until
    the transaction ends, so no acquisition slips in between this check and the write."""
    if fence is None:
        return
    current = conn.execute(select(_lease.c.epoch).where(
        _lease.c.thread_id == fence.thread_id, _lease.c.holder == fence.holder, _lease.c.epoch == fence.epoch)
        .with_for_update()).first()
    if current is None:
        raise LeaseLost(f"the lease of thread {fence.thread_id} (epoch {fence.epoch}) was taken over: write refused")
