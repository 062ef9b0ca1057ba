"""The `tollgate` admin command, run in-process (cli.main uses asyncio.run, so these tests are sync)."""

from __future__ import annotations

import asyncio
import calendar
import io
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

import cli
from store import usage as usage_store
from store import users as user_store
from store.db import Database
from store.usage import SpendLimit, TokenUsage

JAN1 = calendar.timegm((2026, 1, 1, 12, 0, 0))
JAN2 = calendar.timegm((2026, 1, 2, 12, 0, 0))
NO_LIMIT = [SpendLimit("none", "user_day", 10**15)]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("TOLLGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TOLLGATE_DATABASE_URL", raising=False)
    return tmp_path / "data"


def run(capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _call(db: Database, user: str, thread: str, model: str, usage: TokenUsage, cost: int, *,
                at: float | None = None, status: str = "settled") -> None:
    key = await usage_store.reserve(db, user=user, thread_id=thread, turn_id=thread, model=model, purpose="chat",
                                    amount_nanousd=cost + 1_000_000, tokens=usage.total_tokens, limits=NO_LIMIT,
                                    now=at)
    if status != "reserved":
        await usage_store.settle(db, key=key, usage=usage, cost_nanousd=cost, status=status)


async def _populate(data_dir: Path) -> None:
    """Costs hand-computed from agent/prices.toml (USD per million tokens)."""
    db = Database.for_data_dir(data_dir)
    await db.create_schema()
    await user_store.add_user(db, name="alice", password="orchard-apple-1")
    await user_store.add_user(db, name="bob", password="orchard-apple-2")
    # sonnet-4-6: 1000*3 + 2000*15 = $0.033
    await _call(db, "alice", "t0", "claude-sonnet-4-6", TokenUsage(1_000, 2_000), 33_000_000, at=JAN1)
    # opus-5-5: 100*4 + 1000 1h writes*8 + 500*20 = $0.0184
    await _call(db, "alice", "t1", "claude-opus-5-5", TokenUsage(100, 500, 0, 1_000), 18_400_000, at=JAN2)
    # a failed call still pays for the 500 input tokens it reported: 500*3 = $0.0015
    await _call(db, "alice", "t1", "claude-sonnet-4-6", TokenUsage(500), 1_500_000, at=JAN2, status="released")
    # haiku-4-5: 10000*1 + 1000*5 = $0.015
    await _call(db, "bob", "t2", "claude-haiku-4-5", TokenUsage(10_000, 1_000), 15_000_000, at=JAN2)
    # today: 2000*3 = $0.006, and a call still running that holds $0.001 (not in usage, counted in spend)
    await _call(db, "alice", "t3", "claude-sonnet-4-6", TokenUsage(2_000), 6_000_000)
    await _call(db, "alice", "t4", "claude-sonnet-4-6", TokenUsage(), 0, status="reserved")
    await db.close()


async def _db_costs(data_dir: Path, by: str) -> dict[str, Decimal]:
    db = Database.for_data_dir(data_dir)
    try:
        col = {"user": "u.name", "day": "c.day", "model": "c.model", "thread": "c.thread_id"}[by]
        async with db.read() as conn:
            rows = (await conn.exec_driver_sql(
                f"SELECT {col}, SUM(c.cost_nanousd) FROM model_calls c JOIN users u ON u.id = c.user_id "
                f"WHERE c.status != 'reserved' GROUP BY {col}")).all()
        return {str(k): Decimal(v) / 10**9 for k, v in rows}
    finally:
        await db.close()


def test_users_add_list_remove(data_dir, capsys, monkeypatch):
    assert run(capsys, "users", "add", "carol", "--password-stdin", "--role", "operator", stdin="s3cret-passphrase\n",
               monkeypatch=monkeypatch)[:2] == (0, "added carol (operator)\n")
    code, _, err = run(capsys, "users", "add", "carol", "--password-stdin", stdin="again-passphrase\n",
                       monkeypatch=monkeypatch)
    assert code == 1 and "already exists" in err
    assert run(capsys, "users", "list")[1] == "carol\toperator\n"

    async def check() -> bool:
        db = Database.for_data_dir(data_dir)
        try:
            return await user_store.authenticate(db, name="carol", password="s3cret-passphrase") is not None
        finally:
            await db.close()

    assert asyncio.run(check())
    assert run(capsys, "users", "remove", "carol")[:2] == (0, "removed carol\n")
    assert run(capsys, "users", "list")[1] == ""
    code, _, err = run(capsys, "users", "remove", "carol")
    assert code == 1 and "no user 'carol'" in err


def test_budget_set_and_show(data_dir, capsys):
    asyncio.run(_populate(data_dir))
    code, out, _ = run(capsys, "budget", "set", "alice", "--daily", "2.00", "--monthly", "20")
    assert code == 0
    header, _, alice = out.splitlines()
    assert header.split()[:3] == ["user", "today", "daily"]
    # Today: $0.006 settled + $0.001 held by a running call; left: $2 - $0.007.
    # (The month column depends on the date, so it is checked against the store below.)
    assert alice.split()[:4] == ["alice", "$0.0070", "$2.00", "$1.99"]
    code, out, _ = run(capsys, "budget", "show", "--json")
    rows = {r["user"]: r for r in json.loads(out)}
    assert set(rows) == {"alice", "bob"}
    a, b = rows["alice"], rows["bob"]
    assert (Decimal(a["today_usd"]), Decimal(a["daily_limit_usd"]), Decimal(a["monthly_limit_usd"])) == \
        (Decimal("0.007"), Decimal(2), Decimal(20))
    assert (a["daily_limit_is"], b["daily_limit_is"]) == ("set", "default")
    assert Decimal(b["daily_limit_usd"]) == Decimal("1.00")  # Settings.user_daily_usd

    async def stored() -> tuple[tuple[int | None, int | None], int]:
        db = Database.for_data_dir(data_dir)
        try:
            return (await usage_store.get_budget(db, user="alice"),
                    await usage_store.spent(db, scope="user_month", user="alice"))
        finally:
            await db.close()

    budget, month = asyncio.run(stored())
    assert budget == (2_000_000_000, 20_000_000_000)
    assert Decimal(a["month_usd"]) == Decimal(month) / 10**9
    # Only --monthly changes the monthly limit; "default" goes back to the configured default.
    run(capsys, "budget", "set", "alice", "--daily", "default")
    assert asyncio.run(stored())[0] == (None, 20_000_000_000)
    code, out, _ = run(capsys, "budget", "show", "alice", "--json")
    assert [r["user"] for r in json.loads(out)] == ["alice"]


@pytest.mark.parametrize("argv", [["budget", "show", "nobody"], ["budget", "set", "nobody", "--daily", "1"]])
def test_budget_for_an_unknown_user_is_an_error(data_dir, capsys, argv):
    asyncio.run(_populate(data_dir))
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == "" and "no user 'nobody'" in err


@pytest.mark.parametrize("bad", ["-1", "abc", "NaN"])
def test_budget_amounts_are_validated(data_dir, capsys, bad):
    with pytest.raises(SystemExit) as e:
        cli.main(["budget", "set", "alice", "--daily", bad])
    assert e.value.code == 2 and "not an amount" in capsys.readouterr().err


@pytest.mark.parametrize(("by", "expected"), [
    ("user", {"alice": ("4", "0.0589"), "bob": ("1", "0.015")}),
    ("day", {"2026-01-01": ("1", "0.033"), "2026-01-02": ("3", "0.0349"), "today": ("1", "0.006")}),
    ("model", {"claude-haiku-4-5": ("1", "0.015"), "claude-opus-5-5": ("1", "0.0184"),
               "claude-sonnet-4-6": ("3", "0.0405")}),
    ("thread", {"t0": ("1", "0.033"), "t1": ("2", "0.0199"), "t2": ("1", "0.015"), "t3": ("1", "0.006")}),
])
def test_usage_report_matches_the_database(data_dir, capsys, by, expected):
    asyncio.run(_populate(data_dir))
    today = usage_store.utc_day(time.time())
    expected = {today if k == "today" else k: v for k, v in expected.items()}
    code, out, _ = run(capsys, "usage", "--by", by, "--json")
    assert code == 0
    rows = json.loads(out)
    assert {r["key"]: (r["calls"], Decimal(r["cost_usd"])) for r in rows} == \
        {k: (int(calls), Decimal(cost)) for k, (calls, cost) in expected.items()}
    db = asyncio.run(_db_costs(data_dir, by))
    assert {r["key"]: Decimal(r["cost_usd"]).quantize(Decimal("0.01")) for r in rows} == \
        {k: v.quantize(Decimal("0.01")) for k, v in db.items()}
    assert {r["key"]: Decimal(r["cost_usd"]) for r in rows} == db  # exact, in fact

    code, out, _ = run(capsys, "usage", "--by", by)
    lines = out.splitlines()
    assert lines[0].split()[0] == by
    for key, (calls, cost) in expected.items():
        [line] = [ln for ln in lines if ln.startswith(key + " ")]
        assert line.split()[1] == calls and line.split()[-1] == f"${Decimal(cost):.6f}"
    assert lines[-1].split()[-1] == "$0.073900"  # the total row: $0.0589 + $0.015


def test_usage_filters_by_user_and_day(data_dir, capsys):
    asyncio.run(_populate(data_dir))
    rows = json.loads(run(capsys, "usage", "--user", "bob", "--json")[1])
    assert [(r["key"], Decimal(r["cost_usd"])) for r in rows] == [("bob", Decimal("0.015"))]
    rows = json.loads(run(capsys, "usage", "--since", "2026-01-02", "--json")[1])
    # alice: opus $0.0184 + released $0.0015 + today $0.006
    assert {r["key"]: Decimal(r["cost_usd"]) for r in rows} == {"alice": Decimal("0.0259"), "bob": Decimal("0.015")}
    rows = json.loads(run(capsys, "usage", "--by", "model", "--json")[1])
    tokens = {r["key"]: (r["input_tokens"], r["output_tokens"], r["cache_write"]) for r in rows}
    assert tokens["claude-opus-5-5"] == (100, 500, 1_000)
    with pytest.raises(SystemExit):
        cli.main(["usage", "--since", "2026-13-01"])
    assert "not a date" in capsys.readouterr().err


def test_the_installed_command_reads_the_password_from_stdin(data_dir):
    exe = Path(sys.executable).with_name("tollgate")
    env = {**os.environ, "TOLLGATE_DATA_DIR": str(data_dir)}
    done = subprocess.run([str(exe), "users", "add", "dave", "--password-stdin"], input="orchard-apple-5\n", env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, "added dave (user)\n"), done.stderr
    done = subprocess.run([str(exe), "budget", "show", "--json"], env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(done.stdout)[0]["user"] == "dave"
