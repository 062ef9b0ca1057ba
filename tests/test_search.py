"""Thread search (the sidebar's search box): FTS5 over what was written, scoped to the owner."""

from __future__ import annotations

import pytest

from store import threads as thread_store
from store.db import Database
from store.search import fts_query

pytestmark = pytest.mark.both_backends  # the `db` tests run on SQLite and on PostgreSQL


async def _thread(db: Database, owner: str, *texts: str, title: str = "") -> str:
    t = await thread_store.create_thread(db, owner=owner, title=title)
    for i, text in enumerate(texts):
        await thread_store.append_message(db, owner=owner, thread_id=t.id, role="user" if i % 2 == 0 else "assistant",
                                          content=[{"type": "text", "text": text}])
    return t.id


async def _found(db: Database, owner: str, search: str) -> set[str]:
    return {t.id for t in await thread_store.list_threads(db, owner=owner, search=search)}


async def test_finds_words_in_messages_not_only_titles(db: Database) -> None:
    oat = await _thread(db, "alice", "Do we need oat milk?", "Yes, two litres of Oat Milk.", title="groceries")
    other = await _thread(db, "alice", "What is the capital of France?", title="geography")
    assert await _found(db, "alice", "milk") == {oat}
    assert await _found(db, "alice", "MILK litres") == {oat}  # every word, any case, any order
    assert await _found(db, "alice", "capit") == {other}  # the last word is a prefix (search as you type)
    assert await _found(db, "alice", "geography") == {other}  # titles too
    assert await _found(db, "alice", "milk capital") == set()


async def test_never_finds_another_users_threads(db: Database) -> None:
    await _thread(db, "alice", "my secret recipe for plum jam")
    mine = await _thread(db, "bob", "plum trees in the garden")
    assert await _found(db, "bob", "plum") == {mine}
    assert await _found(db, "bob", "recipe") == set()


async def test_searches_text_blocks_not_tool_inputs_or_outputs(db: Database) -> None:
    tid = await _thread(db, "alice", "list my files")
    await thread_store.append_message(db, owner="alice", thread_id=tid, role="assistant", content=[
        {"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "zebra.txt"}}])
    await thread_store.append_message(db, owner="alice", thread_id=tid, role="user", content=[
        {"type": "tool_result", "tool_use_id": "t1", "content": "giraffe"}])
    assert await _found(db, "alice", "zebra") == set()
    assert await _found(db, "alice", "giraffe") == set()
    assert await _found(db, "alice", "files") == {tid}


async def test_follows_answers_updated_in_place_and_deleted_threads(db: Database) -> None:
    tid = await _thread(db, "alice", "tell me a story")
    seq = await thread_store.keep_partial(db, owner="alice", thread_id=tid, text="Once upon")
    assert await _found(db, "alice", "upon") == {tid}
    await thread_store.finish_message(db, owner="alice", thread_id=tid, seq=seq,
                                      content=[{"type": "text", "text": "Once a dragon slept."}])
    assert await _found(db, "alice", "dragon") == {tid}
    assert await _found(db, "alice", "upon") == set()  # the old text left the index
    await thread_store.delete_thread(db, owner="alice", thread_id=tid)
    assert await _found(db, "alice", "dragon") == set()


@pytest.mark.parametrize(("typed", "finds"), [
    ('"', False), ('milk"', True), ("AND", False), ("milk OR", False), ("NEAR(", False), ("*", False),
    ("-milk", True), ("milk)", True), ("a:b", False), ("'; --", False), ("%", False), ("_", False)])
async def test_operators_and_punctuation_typed_by_users_are_only_text(db: Database, typed: str, finds: bool) -> None:
    """Never an FTS5 syntax error or a LIKE wildcard: punctuation separates words, operators are words."""
    tid = await _thread(db, "alice", "oat milk", title="breakfast")
    assert await _found(db, "alice", typed) == ({tid} if finds else set())


def test_query_quotes_every_word_and_prefixes_the_last() -> None:
    assert fts_query('say "hi" now') == '"say" AND """hi""" AND "now" *'
    assert fts_query("   ") is None


async def test_a_database_made_before_the_index_is_backfilled(tmp_path) -> None:
    from sqlmodel import SQLModel

    from store import users as user_store
    from store.schema import BASELINE_TABLES

    db = Database.for_data_dir(tmp_path)
    await db.create_schema()
    await user_store.add_user(db, name="carol", password="orchard-apple-4")
    tid = await _thread(db, "carol", "an old conversation about walruses")
    def drop_index(conn) -> None:  # as if made by a version without the index (and before migrations)
        for name in ("message_search_ai", "message_search_au", "message_search_ad"):
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
        conn.exec_driver_sql("DROP TABLE message_search")
        conn.exec_driver_sql("DROP TABLE alembic_version")
        for table in set(SQLModel.metadata.tables) - BASELINE_TABLES:  # tables later migrations added
            conn.exec_driver_sql(f"DROP TABLE {table}")

    await db.transact(drop_index)
    await db.create_schema()
    assert await _found(db, "carol", "walrus") == {tid}
    await db.close()
