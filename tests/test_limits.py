"""Per-user limits, checked before anything is stored: threads, persisted step size, workspace bytes and files."""

from __future__ import annotations

import asyncio

import pytest

from agent.approvals import Approved
from agent.demo_model import Reply, TextBlock, ToolUseBlock
from agent.events import ToolFinished
from store import steps as step_store
from store import threads as thread_store
from store.limits import LimitExceeded, StoreLimits
from tests.conftest import Recorder, ScriptedApprover
from tools import default_registry
from tools.errors import ToolError
from tools.quota import usage
from tools.registry import ToolContext
from tools.workspace import Workspace

pytestmark = pytest.mark.both_backends  # the `db` tests run on SQLite and on PostgreSQL

KB = 1024


async def test_thread_limit_counts_live_threads_and_refuses_every_way_of_creating_one(db):
    db.limits = StoreLimits(max_threads_per_user=3)
    made = [(await thread_store.create_thread(db, owner="alice")).id for _ in range(3)]
    with pytest.raises(LimitExceeded, match="3 chats, the limit") as refused:
        await thread_store.ensure_thread(db, owner="alice", thread_id="t-4")
    assert refused.value.kind == "threads"
    with pytest.raises(LimitExceeded):
        await thread_store.create_thread(db, owner="alice")
    with pytest.raises(LimitExceeded):  # chainlit's first step of a new chat creates the thread
        await step_store.upsert_step(db, owner="alice", thread_id="t-5", step_id="s-1",
                                     values={"type": "user_message", "output": "hi"})
    assert len(await thread_store.list_threads(db, owner="alice")) == 3
    assert await thread_store.owner_of(db, thread_id="t-4") is None
    assert await thread_store.ensure_thread(db, owner="alice", thread_id=made[0])  # existing ones still work
    assert await thread_store.ensure_thread(db, owner="bob", thread_id="bobs")  # per user
    await thread_store.delete_thread(db, owner="alice", thread_id=made[0])
    assert await thread_store.ensure_thread(db, owner="alice", thread_id="t-4")  # deleting makes room


async def test_oversized_steps_are_refused_before_anything_is_stored(db):
    db.limits = StoreLimits(max_message_chars=100, max_step_chars=1_000)
    with pytest.raises(LimitExceeded, match="Your message is 101 characters; the limit is 100") as refused:
        await step_store.upsert_step(db, owner="alice", thread_id="t-1", step_id="s-1",
                                     values={"type": "user_message", "output": "x" * 101, "name": "alice"})
    assert refused.value.kind == "message_chars"
    assert await thread_store.owner_of(db, thread_id="t-1") is None  # not even the thread was created
    # a socket client picks its step's type, name and metadata: whatever it claims, its step is a message
    for values, message in (({"type": "assistant_message", "output": "x" * 101}, "Your message is 101"),
                            ({"type": "run", "output": "ok", "metadata_json": "z" * 1_001}, "name and metadata")):
        with pytest.raises(LimitExceeded, match=message):
            await step_store.upsert_step(db, owner="alice", thread_id="t-1", step_id="s-2", values=values,
                                         from_client=True)
    # chainlit's on_message run step repeats the message as its input
    with pytest.raises(LimitExceeded) as refused:
        await step_store.upsert_step(db, owner="alice", thread_id="t-1", step_id="s-run",
                                     values={"type": "run", "name": "on_message", "input": "x" * 101})
    assert refused.value.kind == "run_input"
    # the server's own steps: bounded by the step limit, every field counts
    for values in ({"type": "assistant_message", "output": "x" * 1_001},
                   {"type": "tool", "input": "x" * 600, "output": "y" * 401}):
        with pytest.raises(LimitExceeded, match="This step is 1,001 characters; the limit is 1,000"):
            await step_store.upsert_step(db, owner="alice", thread_id="t-1", step_id="s-3", values=values)
    assert await thread_store.owner_of(db, thread_id="t-1") is None
    # within the limit: stored; an oversized update leaves the stored step as it was
    assert await step_store.upsert_step(db, owner="alice", thread_id="t-1", step_id="s-4",
                                        values={"type": "user_message", "output": "x" * 100})
    with pytest.raises(LimitExceeded):
        await step_store.upsert_step(db, owner="alice", thread_id="t-1", step_id="s-4",
                                     values={"type": "assistant_message", "output": "x" * 5_000}, from_client=True)
    [step] = await step_store.list_steps(db, owner="alice", thread_id="t-1")
    assert step["output"] == "x" * 100 and step["type"] == "user_message"


async def test_80_writes_of_250kb_in_one_batch_stop_at_the_default_quota(make_harness):
    """The batch of one model response, run concurrently like the tool executor's TaskGroup, through the real
    write_file tool and the workspace the agent builds from the settings (default 20 MB). The model's side
    of 20 MB of tool input is not replayed here: the demo model takes minutes to stream it."""
    h = make_harness([])
    assert h.settings.workspace_max_bytes == 20_000_000 and h.settings.workspace_max_files == 1_000
    ctx = ToolContext(workspace=h.agent.workspace_for("alice"), user="alice", thread_id="t-1")
    write = default_registry().get("write_file")
    assert write is not None

    async def one(i: int) -> str | ToolError:
        try:
            return await write.run(ctx, {"path": f"dump/{i:02}.txt", "content": "a" * (250 * KB)})
        except ToolError as e:
            return e

    results = await asyncio.gather(*(one(i) for i in range(80)))
    refused = [r for r in results if isinstance(r, ToolError)]
    assert len(results) - len(refused) == 20_000_000 // (250 * KB) == 78
    assert all("over the workspace quota" in str(r) and "nothing was written" in str(r) for r in refused)
    assert usage(h.workspace()).bytes == 78 * 250 * KB <= 20_000_000
    assert len(list((h.workspace() / "dump").iterdir())) == 78  # no partial or temporary files left


async def test_the_model_is_told_when_a_write_is_over_quota(make_harness):
    writes = tuple(ToolUseBlock("write_file", {"path": f"n{i}.txt", "content": "b" * 400}) for i in range(3))
    h = make_harness([Reply(blocks=writes, stop_reason="tool_use"), Reply(blocks=(TextBlock("done"),))],
                     workspace_max_bytes=1_000)
    tid = await h.thread()
    rec = Recorder()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="save three", emit=rec,
                           approver=ScriptedApprover({"write_file": Approved()}))
    assert [r.is_error for r in rec.of(ToolFinished)] == [False, False, True]
    assert "over the workspace quota" in rec.of(ToolFinished)[2].output
    assert sorted(p.name for p in h.workspace().iterdir()) == ["n0.txt", "n1.txt"]


def test_file_count_quota_and_replacing_a_file(tmp_path):
    ws = Workspace(tmp_path / "ws", max_total_bytes=100, max_files=3)
    ws.write_text("a.txt", "x" * 40)
    ws.write_text("b.txt", "x" * 40)
    with pytest.raises(ToolError, match="quota"):  # 120 bytes > 100
        ws.write_text("c.txt", "x" * 40)
    ws.write_text("a.txt", "x" * 60)  # replacing counts the difference: 100 bytes, allowed
    with pytest.raises(ToolError, match="quota"):
        ws.write_text("b.txt", "x" * 41)
    ws.write_text("c.txt", "")
    with pytest.raises(ToolError, match="3 files and folders"):  # a fourth entry
        ws.write_text("d.txt", "")
    with pytest.raises(ToolError, match="quota"):  # a new folder and file: also an entry
        ws.write_text("sub/e.txt", "")
    assert not (tmp_path / "ws" / "sub").exists() and not (tmp_path / "ws" / "d.txt").exists()
    ws.write_text("c.txt", "")  # replacing at the file limit is fine
    assert usage(tmp_path / "ws").entries == 3
