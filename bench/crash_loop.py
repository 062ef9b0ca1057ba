"""kill -9 the real server at random points, many times; after each restart check that the database is
intact, the thread resumes, and no side effect ran twice. `.venv/bin/python bench/crash_loop.py [N]`

Each iteration: a user asks to save a note (a side effect behind an approval) and, at a random moment
(while the answer streams, while the card is pending, or just after the Approve click), the server
process is SIGKILLed and started again on the same data. The survivor then reopens the thread, approves
whatever is still pending, and the note must exist with its content exactly once; PRAGMA integrity_check
must say ok; no tool call may be left "running"; the model context must still be valid (a new message
gets an answer).
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from store import approvals as approval_store
from store.db import Database
from store.models import TOOL_CALLS
from tests.e2e.conftest import PASSWORD, start_server, stop_server
from tests.e2e.test_crash import approve_via
from tests.e2e.test_isolation import APPROVAL_ID, Chat


async def iteration(i: int, data_dir: Path, rng: random.Random, stats: dict[str, int]) -> None:
    server = start_server(data_dir, {"TOLLGATE_DEMO_TOKENS_PER_SEC": "60"})
    try:
        chat = Chat(server.url, "alice")
        await chat.login()
        await chat.connect()
        await chat.send(f"save a note called crash{i}: body {i}")
        point = rng.choice(["streaming", "pending", "after-approve"])
        if point == "streaming":
            await asyncio.sleep(rng.uniform(0.0, 0.6))  # somewhere in the first answer, before or after the card
        else:
            approval_id = (await chat.wait_for(APPROVAL_ID)).group(1)
            if point == "after-approve":
                click = asyncio.create_task(approve_via(chat, approval_id))
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                click.cancel()
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        stats[point] += 1
    finally:
        if server.proc.poll() is None:
            stop_server(server)

    server = start_server(data_dir)
    db = Database.for_data_dir(data_dir)
    try:
        assert await db.integrity_ok(), "integrity_check failed"
        for a in await approval_store.pending_approvals(db, owner="alice"):
            survivor = Chat(server.url, "alice")
            await survivor.login()
            await survivor.connect(thread_id=a.thread_id)
            await survivor.wait_for(re.compile(a.id))
            assert await approve_via(survivor, a.id) == 200
            await survivor.close()
        note = server.workspace("alice") / "notes" / f"crash{i}.txt"
        if note.exists():
            assert note.read_text() == f"body {i}"
            stats["notes_written"] += 1
        async with db.read() as conn:
            running = (await conn.execute(select(TOOL_CALLS).where(TOOL_CALLS.c.status == "running"))).all()
            writes = (await conn.execute(select(TOOL_CALLS.c.tool_use_id).where(TOOL_CALLS.c.tool == "write_file",
                                                                               TOOL_CALLS.c.status == "done"))).all()
        stats["left_running"] += len(running)
        assert len(writes) == len({w.tool_use_id for w in writes}), "a write ran twice"
        check = Chat(server.url, "alice")
        await check.login()
        await check.connect()
        await check.send("list my files")
        await check.wait_for(re.compile("this answer"))
        await check.close()
        stats["survived"] += 1
    finally:
        await db.close()
        stop_server(server)


async def main(n: int) -> None:
    rng = random.Random(20261124)
    stats = {"streaming": 0, "pending": 0, "after-approve": 0, "survived": 0, "notes_written": 0,
             "left_running": 0}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        first = start_server(data_dir)
        first.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        stop_server(first)
        for i in range(n):
            await iteration(i, data_dir, rng, stats)
    print(f"| iterations | killed while streaming / pending / just after Approve | survived | notes written "
          f"| tool calls left running | seconds |\n|---|---|---|---|---|---|\n| {n} | {stats['streaming']} / "
          f"{stats['pending']} / {stats['after-approve']} | {stats['survived']} | {stats['notes_written']} | "
          f"{stats['left_running']} | {time.monotonic() - started:.0f} |")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
