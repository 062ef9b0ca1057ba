"""Another app process's write, for tests: `python -m tests.change_writer URL THREAD_ID TOOL_USE_ID [--no-relay]`
asks one approval on the thread through the store, with the change relay an app process installs
(ui/runtime.py), then exits. `--no-relay`: as an app process did before the relay existed."""

from __future__ import annotations

import asyncio
import sys

from store import approvals as approval_store
from store.db import Database
from store.notify import ChangeRelay


async def ask(url: str, thread_id: str, tool_use_id: str, *, relay: bool) -> None:
    db = Database(url)
    sender = ChangeRelay(db, origin="writer") if relay else None
    try:
        await approval_store.request_approval(
            db, owner="alice", thread_id=thread_id, tool_use_id=tool_use_id, tool="delete_file",
            args={"path": "notes/x.txt"}, args_digest="d-" + tool_use_id, risk="deletes a file",
            untrusted_sources=[], route="operator", timeout_s=600)
    finally:
        if sender is not None:
            await sender.close()  # what was queued still goes out
        await db.close()


if __name__ == "__main__":
    url, thread_id, tool_use_id = sys.argv[1:4]
    asyncio.run(ask(url, thread_id, tool_use_id, relay="--no-relay" not in sys.argv[4:]))
    print("done", flush=True)
