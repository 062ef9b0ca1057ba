"""The store on a real SQLite file: ownership scoping, message order, search, integrity settings."""

from __future__ import annotations

import asyncio
import json

import pytest

from fakeclaude import Reply, TextBlock, ToolUseBlock
from store import approvals as approval_store
from store import threads as thread_store
from store import users as user_store
from store.threads import NotFound
from tests.conftest import APPROVE_ALL, Recorder, deciding

pytestmark = pytest.mark.both_backends  # the `db` tests run on SQLite and on PostgreSQL


async def test_messages_are_numbered_in_order_even_when_appended_concurrently(db):
    t = await thread_store.create_thread(db, owner="alice")
    seqs = await asyncio.gather(*(thread_store.append_message(db, owner="alice", thread_id=t.id, role="user",
                                                              content=[{"type": "text", "text": str(i)}])
                                  for i in range(20)))
    assert sorted(seqs) == list(range(20))
    stored = await thread_store.load_messages(db, owner="alice", thread_id=t.id)
    assert [m.seq for m in stored] == list(range(20))


async def test_nobody_reads_or_writes_another_users_thread(db):
    t = await thread_store.create_thread(db, owner="alice", title="alice's plans")
    await thread_store.append_message(db, owner="alice", thread_id=t.id, role="user",
                                      content=[{"type": "text", "text": "secret"}])
    for attempt in (
        thread_store.load_messages(db, owner="bob", thread_id=t.id),
        thread_store.get_thread(db, owner="bob", thread_id=t.id),
        thread_store.append_message(db, owner="bob", thread_id=t.id, role="user", content=[]),
        thread_store.rename_thread(db, owner="bob", thread_id=t.id, title="pwned"),
        thread_store.delete_thread(db, owner="bob", thread_id=t.id),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert await thread_store.list_threads(db, owner="bob") == []
    assert await thread_store.list_threads(db, owner="bob", search="secret") == []
    assert not await thread_store.ensure_thread(db, owner="bob", thread_id=t.id)
    assert [x.title for x in await thread_store.list_threads(db, owner="alice", search="SECRET")] == ["alice's plans"]
    assert len(await thread_store.load_messages(db, owner="alice", thread_id=t.id)) == 1


async def test_users_passwords_are_hashed_and_checked(db):
    assert await user_store.authenticate(db, name="alice", password="orchard-apple-1") is not None
    assert await user_store.authenticate(db, name="alice", password="wrong") is None
    assert await user_store.authenticate(db, name="nobody", password="orchard-apple-1") is None
    with pytest.raises(ValueError, match="user names"):
        await user_store.add_user(db, name="../etc", password="long-enough")


async def test_sqlite_runs_in_wal_with_foreign_keys(db):
    if not db.is_sqlite:
        pytest.skip("SQLite's settings")
    async with db.read() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1
    assert await db.integrity_ok()


async def test_no_model_request_mixes_two_users_content(make_harness):
    def answer(request):
        return Reply(blocks=(TextBlock("ok"),))

    read = Reply(blocks=(ToolUseBlock("read_file", {"path": "secret.txt"}),), stop_reason="tool_use")
    h = make_harness([read, read, answer, answer, answer, answer])
    for user in ("alice", "bob"):
        h.workspace(user).mkdir(parents=True, exist_ok=True)
        (h.workspace(user) / "secret.txt").write_text(f"{user}-file-secret")
    threads = {u: await h.thread(u) for u in ("alice", "bob")}
    await asyncio.gather(*(h.agent.run_turn(owner=u, thread_id=threads[u], text=f"{u}-typed-secret",
                                            emit=deciding(h.agent, Recorder(), APPROVE_ALL)) for u in ("alice", "bob")))
    await asyncio.gather(*(h.agent.run_turn(owner=u, thread_id=threads[u], text="again",
                                            emit=deciding(h.agent, Recorder(), APPROVE_ALL)) for u in ("alice", "bob")))
    h.brain.assert_done()
    for request in h.brain.requests:
        body = json.dumps(request)
        mine = {u for u in ("alice", "bob") if f"{u}-typed-secret" in body}
        assert len(mine) == 1
        other = ({"alice", "bob"} - mine).pop()
        assert f"{other}-file-secret" not in body and f"{other}-typed-secret" not in body
        [me] = mine
        if "tool_result" in body:
            assert f"{me}-file-secret" in body  # each read its own workspace


async def test_password_hashing_runs_off_the_event_loop(db, monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 costs ~100 ms of CPU by design: on the loop it would stall every chat during a login."""
    import threading

    threads: list[threading.Thread] = []
    real = user_store._hasher

    class Spy:
        def verify(self, hash_: str, password: str) -> bool:
            threads.append(threading.current_thread())
            return real.verify(hash_, password)

    monkeypatch.setattr(user_store, "_hasher", Spy())
    assert await user_store.authenticate(db, name="alice", password="orchard-apple-1") is not None
    assert threads and threads[0] is not threading.main_thread()


async def test_history_steps_are_created_then_updated_in_place_and_stay_in_their_thread(db):
    from store import steps as step_store

    t = await thread_store.create_thread(db, owner="alice")
    other = await thread_store.create_thread(db, owner="alice")
    first = {"name": "list_files", "type": "tool", "input": "{}", "output": "", "is_error": False}
    assert await step_store.upsert_step(db, owner="alice", thread_id=t.id, step_id="s1", values=first)
    assert await step_store.upsert_step(db, owner="alice", thread_id=t.id, step_id="s1",
                                        values={**first, "output": "a.txt", "is_error": True})
    assert await step_store.upsert_step(db, owner="alice", thread_id=t.id, step_id="s2",
                                        values={"name": "answer", "output": "done"})
    [s1, s2] = await step_store.list_steps(db, owner="alice", thread_id=t.id)
    assert (s1["id"], s1["name"], s1["output"], s1["is_error"]) == ("s1", "list_files", "a.txt", True)
    assert (s2["id"], s2["output"], s2["type"]) == ("s2", "done", "")  # a field not sent keeps its default
    with pytest.raises(NotFound):  # a step id of one thread cannot be rewritten through another
        await step_store.upsert_step(db, owner="alice", thread_id=other.id, step_id="s1", values={"output": "x"})
    assert not await step_store.upsert_step(db, owner="bob", thread_id=t.id, step_id="s3", values={"output": "x"})
    assert [s["output"] for s in await step_store.list_steps(db, owner="alice", thread_id=t.id)] == ["a.txt", "done"]


async def test_a_step_write_to_an_owned_thread_is_one_statement_and_refusals_still_hold(db):
    """Chainlit writes every send and update of a step: ~14 a turn. The usual one, into the owner's live thread,
    is one statement that checks ownership itself; an update that first tries the insert is two."""
    from sqlalchemy import event

    from store import steps as step_store

    t = await thread_store.create_thread(db, owner="alice")
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("BEGIN", "SELECT PG_ADVISORY_XACT_LOCK", "COMMIT")):
            statements.append(statement.split()[0].upper())

    engines = db.read_engines + ([db._writer] if db._writer is not None else [])
    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        assert await step_store.upsert_step(db, owner="alice", thread_id=t.id, step_id="s1", values={"output": "a"})
        assert statements == ["INSERT"]
        statements.clear()
        assert await step_store.upsert_step(db, owner="alice", thread_id=t.id, step_id="s1", values={"output": "b"})
        assert statements == ["INSERT", "UPDATE"]
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)
    # the one-statement path refuses what the checked path refused: another owner, a deleted thread
    assert not await step_store.upsert_step(db, owner="bob", thread_id=t.id, step_id="s1", values={"output": "x"})
    assert not await step_store.upsert_step(db, owner="bob", thread_id=t.id, step_id="s9", values={"output": "x"})
    await thread_store.delete_thread(db, owner="alice", thread_id=t.id)
    assert not await step_store.upsert_step(db, owner="alice", thread_id=t.id, step_id="s1", values={"output": "y"})
    assert not await step_store.upsert_step(db, owner="alice", thread_id=t.id, step_id="s8", values={"output": "y"})
    async with db.read() as conn:
        rows = (await conn.exec_driver_sql("SELECT id, output FROM ui_steps ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("s1", "b")]


async def test_the_owner_can_veto_an_operator_routed_call_but_not_approve_it(db):
    t = await thread_store.create_thread(db, owner="alice")

    async def ask(tool_use_id: str) -> str:
        a = await approval_store.request_approval(
            db, owner="alice", thread_id=t.id, tool_use_id=tool_use_id, tool="delete_file",
            args={"path": "notes/a.txt"}, args_digest="d", risk="Deletes a file.", untrusted_sources=[],
            route="operator", timeout_s=600)
        return a.id

    first, second = await ask("tu1"), await ask("tu2")
    approved = await approval_store.decide(db, approval_id=first, decision="approved", decided_by="alice", via="chat")
    assert approved.status == "pending"  # approving an operator-routed call is the operator's
    vetoed = await approval_store.decide(db, approval_id=second, decision="rejected", decided_by="alice", via="chat",
                                         reason="not now")
    assert (vetoed.status, vetoed.decided_by, vetoed.reason) == ("rejected", "alice", "not now")
    with pytest.raises(NotFound):  # a veto is the owner's only: another user cannot even see the row
        await approval_store.decide(db, approval_id=first, decision="rejected", decided_by="bob", via="chat")
