"""Accounts: the password policy, the demo login's rules, the login failure limits (real SQLite file,
injected clock) and session cut-offs in the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from store import logins as login_store
from store import sessions as session_store
from store import users as user_store
from store.db import Database
from store.passwords import DEMO_PASSWORD, DEMO_USER, WeakPassword, password_problem
from tests.test_cli import data_dir, run  # noqa: F401  (fixture)
from ui.logins import LoginLimits, Refusal, attempt_login, demo_allowed

pytestmark = pytest.mark.both_backends  # the `db` tests run on SQLite and on PostgreSQL

GOOD = "orchard-apple-1"
LIMITS = LoginLimits(per_account=5, per_address=20, window_s=900)


@pytest.mark.parametrize(("name", "password", "problem"), [
    ("carol", "1234", "at least 10"),
    ("carol", "short-pw", "at least 10"),
    ("carol", "aaaaaaaaaaaa", "one character"),
    ("carol", "my-carol-password", "user name"),
    ("carol", "CAROL-1234567", "user name"),
    ("carol", "Password123", "common"),
    ("carol", "x" * 2000 + "y", "at most"),
])
def test_policy_refuses(name: str, password: str, problem: str) -> None:
    assert problem in (password_problem(name=name, password=password) or "")


def test_policy_accepts_a_long_passphrase() -> None:
    assert password_problem(name="carol", password="correct horse") is None


def test_cli_add_refuses_weak_passwords_exit_2_nothing_created(data_dir, capsys, monkeypatch) -> None:  # noqa: F811
    for weak in ("1234", "carol-12345", "zzzzzzzzzzzz", "qwertyuiop"):
        code, out, err = run(capsys, "users", "add", "carol", "--password-stdin", stdin=weak + "\n",
                             monkeypatch=monkeypatch)
        assert (code, out) == (2, ""), weak
        assert "error: a password" in err or "error: this password" in err
    assert run(capsys, "users", "list")[1] == ""


async def test_store_refuses_weak_password_and_set_password(db: Database) -> None:
    with pytest.raises(WeakPassword):
        await user_store.add_user(db, name="carol", password="1234")
    assert await user_store.get_user(db, name="carol") is None
    with pytest.raises(WeakPassword):
        await user_store.set_password(db, name="alice", password="alice-alice-alice")
    assert await user_store.set_password(db, name="alice", password="a new passphrase")
    assert await user_store.authenticate(db, name="alice", password="a new passphrase") is not None


# The demo login

def test_ensure_demo_creates_it_only_on_loopback_with_no_user(data_dir, capsys, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("CHAINLIT_HOST", "0.0.0.0")
    code, _, err = run(capsys, "users", "ensure-demo")
    assert code == 0 and "no demo login" in err
    assert run(capsys, "users", "list")[1] == ""
    monkeypatch.setenv("CHAINLIT_HOST", "127.0.0.1")
    assert "created the demo login" in run(capsys, "users", "ensure-demo")[1]
    assert run(capsys, "users", "list")[1] == "demo\toperator\n"


def test_adding_a_real_user_removes_the_demo_login_loudly(data_dir, capsys, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("CHAINLIT_HOST", "127.0.0.1")
    run(capsys, "users", "ensure-demo")
    code, out, _ = run(capsys, "users", "add", "carol", "--password-stdin", stdin=GOOD + "\n", monkeypatch=monkeypatch)
    assert code == 0 and "removed the demo login 'demo'" in out
    assert run(capsys, "users", "list")[1] == "carol\tuser\n"
    assert run(capsys, "users", "ensure-demo")[1] == ""  # users exist: no demo comes back


def test_ensure_demo_removes_a_demo_left_beside_real_users(data_dir, capsys, monkeypatch) -> None:  # noqa: F811
    async def seed() -> None:
        db = Database.for_data_dir(data_dir)
        await db.create_schema()
        await user_store.add_demo_user(db)
        await user_store.add_user(db, name="carol", password=GOOD)
        await db.close()

    asyncio.run(seed())
    monkeypatch.setenv("CHAINLIT_HOST", "127.0.0.1")
    code, out, _ = run(capsys, "users", "ensure-demo")
    assert code == 0 and "removed the demo login" in out
    assert run(capsys, "users", "list")[1] == "carol\tuser\n"


async def test_demo_login_refused_beside_real_users_or_beyond_loopback(db: Database, monkeypatch) -> None:
    monkeypatch.setenv("CHAINLIT_HOST", "127.0.0.1")
    await user_store.add_demo_user(db)  # the db fixture has alice and bob
    assert not await demo_allowed(db)
    r = await attempt_login(db, name=DEMO_USER, password=DEMO_PASSWORD, address="127.0.0.1", limits=LIMITS)
    assert (r.user, r.refusal) == (None, Refusal.DEMO_REFUSED)


async def test_demo_login_only_alone_and_on_loopback(tmp_path: Path, monkeypatch) -> None:
    db = Database.for_data_dir(tmp_path / "data")
    await db.create_schema()
    try:
        await user_store.add_demo_user(db)
        monkeypatch.setenv("CHAINLIT_HOST", "127.0.0.1")
        ok = await attempt_login(db, name=DEMO_USER, password=DEMO_PASSWORD, address="a", limits=LIMITS)
        assert ok.user is not None and ok.user.name == DEMO_USER
        monkeypatch.setenv("CHAINLIT_HOST", "0.0.0.0")
        r = await attempt_login(db, name=DEMO_USER, password=DEMO_PASSWORD, address="a", limits=LIMITS)
        assert (r.user, r.refusal) == (None, Refusal.DEMO_REFUSED)
    finally:
        await db.close()


# Login failure limits (an injected clock: no sleeping)

class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_thirty_wrong_then_the_right_one_refused_until_the_window_passes(db: Database) -> None:
    clock = Clock()
    results = [await attempt_login(db, name="alice", password=f"wrong-{i}", address="10.0.0.1", limits=LIMITS,
                                   clock=clock) for i in range(30)]
    assert all(r.user is None for r in results)
    assert [r.refusal for r in results[:5]] == [Refusal.BAD_CREDENTIALS] * 5
    assert {r.refusal for r in results[5:]} == {Refusal.RATE_LIMITED}
    right = await attempt_login(db, name="alice", password=GOOD, address="10.0.0.1", limits=LIMITS, clock=clock)
    assert (right.user, right.refusal) == (None, Refusal.RATE_LIMITED)
    # another account from another address is unaffected
    bob = await attempt_login(db, name="bob", password="orchard-apple-2", address="10.0.0.2", limits=LIMITS,
                              clock=clock)
    assert bob.user is not None
    # alice from a fresh address is still held by her account's count
    other = await attempt_login(db, name="alice", password=GOOD, address="10.0.0.3", limits=LIMITS, clock=clock)
    assert other.refusal is Refusal.RATE_LIMITED
    clock.now += LIMITS.window_s - 1
    assert (await attempt_login(db, name="alice", password=GOOD, address="10.0.0.1", limits=LIMITS,
                                clock=clock)).refusal is Refusal.RATE_LIMITED
    clock.now += 2  # the window has passed
    ok = await attempt_login(db, name="alice", password=GOOD, address="10.0.0.1", limits=LIMITS, clock=clock)
    assert ok.user is not None and ok.user.name == "alice"


async def test_concurrent_wrong_passwords_from_two_processes_get_exactly_the_limit_of_guesses(db: Database) -> None:
    """12 wrong passwords at the same moment, half through another engine (another process's view of the same
    database): exactly `per_account` of them are checked, the rest are refused by the limit unchecked."""
    other = Database(db.url)
    clock = Clock()
    try:
        results = await asyncio.gather(*(attempt_login(db if i % 2 else other, name="alice", password=f"wrong-{i}",
                                                       address=f"10.7.0.{i}", limits=LIMITS, clock=clock)
                                         for i in range(12)))
    finally:
        await other.close()
    refusals = [r.refusal for r in results]
    assert all(r.user is None for r in results)
    assert refusals.count(Refusal.BAD_CREDENTIALS) == LIMITS.per_account
    assert refusals.count(Refusal.RATE_LIMITED) == 12 - LIMITS.per_account
    assert (await login_store.failures_since(db, account="alice", address="10.7.0.1", since=0))[0] == 5
    # the right password is refused too now, and a right one before the limit is not counted as a failure
    right = await attempt_login(db, name="alice", password=GOOD, address="10.7.1.1", limits=LIMITS, clock=clock)
    assert right.refusal is Refusal.RATE_LIMITED
    bob_ok = await attempt_login(db, name="bob", password="orchard-apple-2", address="10.7.2.1", limits=LIMITS,
                                 clock=clock)
    assert bob_ok.user is not None
    assert await login_store.failures_since(db, account="bob", address="10.7.2.1", since=0) == (0, 0)


async def test_per_address_limit_across_accounts(db: Database) -> None:
    clock = Clock()
    for i in range(20):  # 20 different names, 1 failure each: no account limit reached
        await attempt_login(db, name=f"guess{i}", password="x", address="10.0.0.9", limits=LIMITS, clock=clock)
    held = await attempt_login(db, name="bob", password="orchard-apple-2", address="10.0.0.9", limits=LIMITS,
                               clock=clock)
    assert held.refusal is Refusal.RATE_LIMITED
    elsewhere = await attempt_login(db, name="bob", password="orchard-apple-2", address="10.0.0.10", limits=LIMITS,
                                    clock=clock)
    assert elsewhere.user is not None


async def test_unknown_and_known_accounts_answer_alike(db: Database) -> None:
    clock = Clock()

    async def refusals(name: str, address: str) -> list[Refusal | None]:
        return [(await attempt_login(db, name=name, password="wrong", address=address, limits=LIMITS,
                                     clock=clock)).refusal for _ in range(8)]

    assert await refusals("alice", "10.1.0.1") == await refusals("nobody-here", "10.1.0.2")


# Session cut-offs

async def test_session_cutoff_and_removed_user(db: Database) -> None:
    assert await session_store.session_valid(db, name="alice", issued_at=100.0)
    await session_store.revoke_sessions(db, name="alice", at=200.0)
    assert not await session_store.session_valid(db, name="alice", issued_at=150.0)
    assert not await session_store.session_valid(db, name="alice", issued_at=200.0)
    assert await session_store.session_valid(db, name="alice", issued_at=200.5)
    await session_store.revoke_sessions(db, name="alice", at=50.0)  # never moves back
    assert not await session_store.session_valid(db, name="alice", issued_at=150.0)
    await user_store.remove_user(db, name="bob")
    assert not await session_store.session_valid(db, name="bob", issued_at=10**12)
