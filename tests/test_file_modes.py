"""The data dir is 0700 and the database (with its -wal/-shm), the auth secret and the trace log 0600,
whatever the umask; a data dir made with open modes is tightened at start, with a log line."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.trace import TraceLog
from store import users as user_store
from store.db import Database
from ui.setup import ensure_auth_secret


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the worst case: nothing masked
    yield
    os.umask(old)


async def test_fresh_data_dir_is_private_under_umask_0(tmp_path: Path, open_umask: None, monkeypatch) -> None:
    monkeypatch.delenv("CHAINLIT_AUTH_SECRET", raising=False)
    monkeypatch.delenv("TOLLGATE_DATABASE_URL", raising=False)
    data = tmp_path / "data"
    ensure_auth_secret(data)
    db = Database.for_data_dir(data)
    try:
        await db.create_schema()
        await user_store.add_user(db, name="alice", password="orchard-apple-1")
        async with db.read() as conn:  # a reader holds the WAL open: -wal and -shm exist now
            await conn.exec_driver_sql("SELECT count(*) FROM users")
            assert (data / "tollgate.db-wal").exists() and (data / "tollgate.db-shm").exists()
            TraceLog(data / "trace.jsonl").emit("test")
            assert mode(data) == 0o700
            for name in ("tollgate.db", "tollgate.db-wal", "tollgate.db-shm", "auth_secret", "trace.jsonl"):
                assert mode(data / name) == 0o600, name
    finally:
        await db.close()


async def test_open_modes_are_tightened_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                 monkeypatch) -> None:
    monkeypatch.delenv("TOLLGATE_DATABASE_URL", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("tollgate.db", "trace.jsonl", "auth_secret"):
        (data / name).write_bytes(b"")
        os.chmod(data / name, 0o644)
    os.chmod(data, 0o755)
    with caplog.at_level(logging.WARNING, logger="tollgate"):
        db = Database.for_data_dir(data)
    await db.close()
    assert mode(data) == 0o700
    assert all(mode(data / n) == 0o600 for n in ("tollgate.db", "trace.jsonl", "auth_secret"))
    assert "tightened modes" in caplog.text and "0755 -> 0700" in caplog.text


def test_a_symlink_in_the_data_dir_is_not_followed(tmp_path: Path) -> None:
    from store.filemodes import secure_data_dir

    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    os.chmod(outside, 0o644)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "trace.jsonl").symlink_to(outside)
    secure_data_dir(data)
    assert mode(outside) == 0o644
