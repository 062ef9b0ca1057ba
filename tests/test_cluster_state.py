"""Shared state of several app processes on one database (store/cluster.py, agent/cluster.py, agent/leases.py,
agent/wakeups.py), on SQLite and on a real throwaway PostgreSQL: every "exactly one" under real concurrency."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cluster import Membership, Timing
from agent.leases import ThreadTurns
from store import cluster as cluster_store
from store import usage as usage_store
from store.db import Database
from store.notify import PgListener
from store.usage import SpendLimit, TokenUsage

ROOT = Path(__file__).resolve().parents[1]
BIG = [SpendLimit("daily", "user_day", 10**15)]


pytestmark = pytest.mark.both_backends


def other_process(db: Database) -> Database:
    """Another process's view of the same database: its own engine and connections."""
    return Database(db.url)


async def test_a_lease_has_one_live_holder_and_a_former_holder_cannot_release_its_successor(
        db: Database) -> None:
    now = time.time()
    for p in ("pa", "pb"):
        await cluster_store.register_process(db, process_id=p, host="h", pid=1, now=now)
    alive = now - 15
    a = await cluster_store.acquire_lease(db, thread_id="t1", holder="pa", alive_since=alive, now=now)
    assert a == 1
    assert await cluster_store.acquire_lease(db, thread_id="t1", holder="pb", alive_since=alive, now=now) is None
    assert await cluster_store.lease_holder(db, thread_id="t1", alive_since=alive) == "pa"
    # pa stops beating: once it counts as dead, pb takes the lease over with a new epoch ...
    later = now + 20
    await cluster_store.heartbeat(db, process_id="pb", now=later)
    b = await cluster_store.acquire_lease(db, thread_id="t1", holder="pb", alive_since=later - 15, now=later)
    assert b == 2
    # ... and pa, back from its stall, cannot free pb's lease (fencing by epoch)
    assert not await cluster_store.release_lease(db, thread_id="t1", holder="pa", epoch=1)
    assert await cluster_store.lease_holder(db, thread_id="t1", alive_since=later - 15) == "pb"
    assert await cluster_store.release_lease(db, thread_id="t1", holder="pb", epoch=2)


async def test_one_turn_at_a_time_per_thread_across_processes(
        db: Database) -> None:
    other = other_process(db)
    members = [Membership(db), Membership(other)]
    for m in members:
        await cluster_store.register_process(m.db, process_id=m.id, host="h", pid=1, now=time.time())
    turns = [ThreadTurns(m.db, holder=lambda m=m: m.id, alive_since=m.alive_since) for m in members]
    inside, most, order = 0, 0, []

    async def turn(i: int) -> None:
        nonlocal inside, most
        async with turns[i % 2].hold("thread-x"):
            inside += 1
            most = max(most, inside)
            order.append(i)
            await asyncio.sleep(0.02)  # a turn's work: the other process must not enter meanwhile
            inside -= 1

    await asyncio.gather(*(turn(i) for i in range(8)))
    assert most == 1 and sorted(order) == list(range(8))
    await other.close()


async def test_a_due_resume_is_claimed_exactly_once_among_many_processes(
        db: Database) -> None:
    peers = [other_process(db) for _ in range(6)]
    now = time.time()
    for i in range(20):
        await cluster_store.request_resume(db, thread_id=f"t{i}", owner="alice", at=now - 1, now=now)
    won: list[str] = []

    async def claim_all(p: int, peer: Database) -> None:
        for due in await cluster_store.due_resumes(peer, now=time.time(), alive_since=0):
            if await cluster_store.claim_resume(peer, thread_id=due.thread_id, version=due.version,
                                                process_id=f"p{p}", now=time.time(), hold_s=60):
                won.append(due.thread_id)

    await asyncio.gather(*(claim_all(p, peer) for p, peer in enumerate(peers)))
    assert sorted(won) == sorted(f"t{i}" for i in range(20))  # each once, none lost
    for peer in peers:
        await peer.close()


async def test_a_request_made_while_a_claim_runs_is_kept_and_the_earlier_time_wins(
        db: Database) -> None:
    now = time.time()
    await cluster_store.request_resume(db, thread_id="t", owner="alice", at=now - 1, now=now)
    [due] = await cluster_store.due_resumes(db, now=now, alive_since=0)
    assert await cluster_store.claim_resume(db, thread_id="t", version=due.version, process_id="p", now=now, hold_s=60)
    assert await cluster_store.due_resumes(db, now=now, alive_since=0) == []  # claimed: nobody else runs it
    await cluster_store.request_resume(db, thread_id="t", owner="alice", at=now + 600, now=now)  # news meanwhile
    await cluster_store.finish_resume(db, thread_id="t", version=due.version)
    [again] = await cluster_store.due_resumes(db, now=now, alive_since=0)  # not deleted; earlier due time kept
    assert again.version != due.version and again.due_at == due.due_at


async def test_the_sweeper_closes_only_the_reservations_of_a_dead_process(
        db: Database) -> None:
    """Start-up used to charge every open reservation ("no call is in flight at start-up"), which on a shared
    database closes a live peer's calls; now a process's start leaves them alone and only a dead one's go."""
    peer_db = other_process(db)
    live_peer, dead_peer = Membership(peer_db), Membership(db)
    keys = {}
    for m in (live_peer, dead_peer):
        await cluster_store.register_process(m.db, process_id=m.id, host="h", pid=1, now=time.time())
        m.db.key_prefix = m.id + "."
        keys[m.id] = await usage_store.reserve(m.db, user="alice", thread_id=None, turn_id="t", model="m",
                                               purpose="chat", amount_nanousd=1000, tokens=10, limits=BIG)
    await cluster_store.heartbeat(db, process_id=dead_peer.id, now=time.time() - 60)  # it stopped beating
    starting = other_process(db)
    newcomer = Membership(starting, Timing(heartbeat_s=3600))
    await newcomer.start()
    if db.is_sqlite:  # one process per SQLite file: an earlier registration is a former self, all its work goes
        assert not await usage_store.settle(db, key=keys[live_peer.id], usage=TokenUsage(), cost_nanousd=1)
    else:
        assert await usage_store.settle(peer_db, key=keys[live_peer.id], usage=TokenUsage(), cost_nanousd=1)
    assert not await usage_store.settle(db, key=keys[dead_peer.id], usage=TokenUsage(), cost_nanousd=1)
    await newcomer.close()
    for d in (starting, peer_db):
        await d.close()


async def test_a_wakeup_reaches_another_process_through_listen_notify(
        db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("NOTIFY is PostgreSQL's; SQLite has one process")
    got: asyncio.Queue[str] = asyncio.Queue()
    listener = PgListener(db.url, got.put_nowait)
    listener.start()
    await asyncio.wait_for(listener.connected.wait(), 30)
    assert await asyncio.wait_for(got.get(), 30) == ""  # the look-once after (re)connecting
    await cluster_store.request_resume(db, thread_id="t-live", owner="alice", at=time.time(), now=time.time())
    assert await asyncio.wait_for(got.get(), 30) == "t-live"
    await cluster_store.request_resume(db, thread_id="t-later", owner="alice", at=time.time() + 60,
                                       now=time.time())  # not due: no wake-up, the poll will find it in time
    await cluster_store.request_resume(db, thread_id="t-live2", owner="alice", at=time.time(), now=time.time())
    assert await asyncio.wait_for(got.get(), 30) == "t-live2"
    await listener.close()


@pytest.mark.parametrize("sessions", [10, 50])
async def test_a_budget_race_across_two_processes_overspends_nothing(db: Database, sessions: int) -> None:
    """Two OS processes, each with its own engine, reserve for one user at the same moment."""
    if db.is_sqlite:
        pytest.skip("one process per SQLite file")
    amount, fits = 1_000_000, 7
    cap = amount * fits + amount // 2
    procs = [subprocess.Popen([sys.executable, "-m", "tests.cluster", "race", db.url, "alice", str(sessions),
                               str(amount), str(cap)], cwd=ROOT, text=True, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    admitted = [int(p.communicate(timeout=300)[0].strip()) for p in procs]
    held = await usage_store.spent(db, scope="user_day", user="alice")
    assert sum(admitted) == fits and held == fits * amount <= cap  # overspend 0, nothing refused that fitted


def test_with_postgresql_the_auth_secret_must_be_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret made per data dir would sign sessions only that process accepts: refuse to start instead."""
    from ui.setup import SharedSettingMissing, ensure_auth_secret

    monkeypatch.delenv("CHAINLIT_AUTH_SECRET", raising=False)
    monkeypatch.setenv("TOLLGATE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    with pytest.raises(SharedSettingMissing, match="CHAINLIT_AUTH_SECRET is required"):
        ensure_auth_secret(tmp_path / "data")
    assert not (tmp_path / "data" / "auth_secret").exists()


async def test_with_postgresql_the_workspaces_dir_must_be_named(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.config import Settings
    from ui.runtime import build_runtime
    from ui.setup import SharedSettingMissing

    monkeypatch.setenv("TOLLGATE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    with pytest.raises(SharedSettingMissing, match="TOLLGATE_WORKSPACES is required"):
        await build_runtime(Settings(data_dir=tmp_path / "data"))
