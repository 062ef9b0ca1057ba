"""The chat history's step writes (ui/datalayer.py) against a real SQLite file, inside chainlit's context.

Chainlit persists every send and update of a step as a task of its own, each carrying the whole step. They land
in the order they were made (an answer's final send must not erase the usage footer its update added), and one
with a newer write of the same step already queued behind it is not written at all: under load, when writes
queue for the one writer, a step's create and its update a moment later cost one transaction, not two.
In a subprocess: importing chainlit emits warnings, which are errors in this suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import asyncio, sys
from types import SimpleNamespace
from pathlib import Path
from ui import web
web.build_app()
from chainlit.context import init_http_context
from chainlit.user import User
from store import steps as step_store, users as user_store
from store.db import Database
from ui.datalayer import StoreDataLayer

async def main():
    db = Database.for_data_dir(Path(sys.argv[1]))
    await db.upgrade_schema()
    await user_store.add_user(db, name="alice", password="orchard-apple-1")
    async def runtime():
        return SimpleNamespace(db=db)
    layer = StoreDataLayer(runtime)
    init_http_context(user=User(identifier="alice"))
    step = {"id": "s-1", "threadId": "t-1", "name": "Tollgate", "type": "assistant_message",
            "createdAt": "2026-12-01T00:00:00Z"}
    writes = [asyncio.create_task((layer.create_step if i == 0 else layer.update_step)({**step, "output": f"v{i}"}))
              for i in range(5)]
    await asyncio.gather(*writes)
    queued = [s["output"] for s in await step_store.list_steps(db, owner="alice", thread_id="t-1")]
    print("queued", queued, "skipped", layer.writes_skipped, "queues", len(layer._step_queues))
    await layer.update_step({**step, "output": "alone"})  # nothing queued behind it: written
    alone = [s["output"] for s in await step_store.list_steps(db, owner="alice", thread_id="t-1")]
    print("alone", alone, "skipped", layer.writes_skipped)
    from sqlalchemy import event
    reads = []
    def seen(_c, _cur, statement, *_a):
        reads.append(statement.split()[0])
    for engine in db.read_engines:
        event.listen(engine, "before_cursor_execute", seen)
    user = await layer.get_user("alice")  # chainlit asks on every message
    print("user", user.identifier, user.metadata, user.createdAt[:4], [r for r in reads if r != "BEGIN"])
    await db.close()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp_path = tmp_path_factory.mktemp("datalayer")
    env = {"PATH": "/usr/bin:/bin", "TOLLGATE_DATA_DIR": str(tmp_path / "app"), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "data")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_a_steps_queued_writes_land_in_order_and_only_the_newest_is_written(probe: str) -> None:
    # The first write had the writer to itself; v1..v3 were made moot by v4 queued behind them; nothing is
    # left held once the writes are done.
    assert "queued ['v4'] skipped 3 queues 0" in probe, probe
    assert "alone ['alone'] skipped 3" in probe, probe


def test_chainlits_user_lookup_is_one_read(probe: str) -> None:
    assert "user alice {'role': 'user'} 20" in probe and "['SELECT']" in probe, probe
