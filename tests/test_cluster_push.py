"""The operator console's push across app processes on one PostgreSQL (store/notify.py ChangeRelay and
PgListener): an approval asked by another OS process reaches this process's pending stream at once, not at
the slow re-check. The stream here re-checks only every hour, so only the relayed wake-up can deliver."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from store import changes
from store import threads as thread_store
from store.db import Database
from store.notify import CHANGES_CHANNEL, PgListener
from tests.test_console_push import next_event, stream_of

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.both_backends


def ask_in_another_process(url: str, thread_id: str, tool_use_id: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tests.change_writer", url, thread_id, tool_use_id], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "done", done.stderr


async def test_an_approval_asked_on_another_process_reaches_the_console_stream_at_once(
        db: Database, tmp_path: Path) -> None:
    if db.is_sqlite:
        pytest.skip("one process per SQLite file: the local notifier is the whole story")
    tid = (await thread_store.create_thread(db, owner="alice")).id
    listener = PgListener(db.url, lambda _payload: None, origin="console-process")
    listener.start()
    stream = stream_of(db, tmp_path, recheck_s=3600)  # only a wake-up can make it send again
    try:
        await asyncio.wait_for(listener.connected.wait(), 30)
        assert await next_event(stream, 30) == ("pending", [])
        waiting = asyncio.ensure_future(next_event(stream, 60))
        await asyncio.sleep(0)  # the stream reaches its wait before the write
        await asyncio.to_thread(ask_in_another_process, db.url, tid, "far-1")
        kind, items = await waiting
        assert kind == "pending" and [(i["thread"], i["tool"]) for i in items] == [(tid, "delete_file")]
    finally:
        await stream.aclose()
        await listener.close()


async def test_a_listener_skips_the_echo_of_its_own_changes_and_never_relays_what_it_heard(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("NOTIFY is PostgreSQL's")
    relayed: list[str] = []
    me = PgListener(db.url, lambda _payload: None, origin="me")
    me.start()
    changes.notifier().add_relay(relayed.append)
    try:
        await asyncio.wait_for(me.connected.wait(), 30)
        with changes.notifier().subscribe("topic-x") as mine, changes.notifier().subscribe("topic-z") as theirs:
            async with db.read() as conn:  # in order: our own echo first, then another process's change
                for payload in ("me:topic-x", "other:topic-z"):
                    await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANGES_CHANNEL, "p": payload})
                    await conn.commit()
            assert await theirs.wait(30)
            assert not await mine.wait(0.05)  # delivered in order: the echo came first and woke nobody
    finally:
        changes.notifier().remove_relay(relayed.append)
        await me.close()
    assert relayed == []  # a wake-up heard over LISTEN is not sent out again
