"""`tollgate`: admin commands over the project's store (users, budgets, usage, records)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal, InvalidOperation

from agent.config import Settings
from agent.pricing import fmt_usd, from_nano, to_nano
from store import records, schema
from store import sessions as session_store
from store import usage as usage_store
from store import users as user_store
from store.db import Database
from store.passwords import DEMO_PASSWORD, DEMO_USER, WeakPassword
from ui.logins import retire_demo, retire_demo_if_not_allowed
from ui.setup import listen_host, listens_on_loopback

WEAK_PASSWORD_EXIT = 2


def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount in USD: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"not an amount >= 0 in USD: {text!r}")
    return value


SCHEMA_ERROR_EXIT = 3


async def _db(*, upgrade: bool) -> Database:
    db = Database.for_data_dir(Settings().data_dir)
    if upgrade:
        try:
            await db.upgrade_schema()
        except BaseException:
            await db.close()
            raise
    return db


async def db_upgrade(db: Database, args: argparse.Namespace) -> int:
    done = await db.upgrade_schema()
    if done.adopted:
        print(f"recognised a database made before migrations as {schema.BASELINE} and stamped it")
    if done.from_revision == done.to_revision:
        print(f"schema is up to date at {done.to_revision}")
    else:
        print(f"upgraded the schema from {done.from_revision or 'nothing'} to {done.to_revision}")
    return 0


async def db_current(db: Database, args: argparse.Namespace) -> int:
    state = await db.schema_status()
    if args.json:
        print(json.dumps({"revision": state.revision, "head": state.head, "status": state.kind}))
        return 0
    what = {"empty": "no schema yet (the app or `tollgate db upgrade` creates it)",
            "unversioned": "made before migrations (the app or `tollgate db upgrade` adopts it as the baseline)",
            "behind": "older than this Tollgate (the app or `tollgate db upgrade` upgrades it)",
            "current": "up to date",
            "newer": "NEWER than this Tollgate knows: it will not start on it"}[state.kind]
    print(f"revision: {state.revision or '-'}\nhead: {state.head}\nstatus: {state.kind}: {what}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise SystemExit("passwords differ")
    return first


async def users_add(db: Database, args: argparse.Namespace) -> int:
    try:
        user = await user_store.add_user(db, name=args.name, password=_read_password(args), role=args.role)
    except WeakPassword as e:
        print(f"error: {e}; nothing was created", file=sys.stderr)
        return WEAK_PASSWORD_EXIT
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"added {user.name} ({user.role})")
    if user.name != DEMO_USER and await retire_demo(db, why=f"a real user ({user.name}) exists now"):
        print(f"removed the demo login {DEMO_USER!r} / {DEMO_PASSWORD!r}: a real user exists now")
    return 0


async def users_set_password(db: Database, args: argparse.Namespace) -> int:
    """A new password; every session of the user ends (their tokens are revoked)."""
    try:
        changed = await user_store.set_password(db, name=args.name, password=_read_password(args))
    except WeakPassword as e:
        print(f"error: {e}; the password was not changed", file=sys.stderr)
        return WEAK_PASSWORD_EXIT
    if not changed:
        print(f"error: no user {args.name!r}", file=sys.stderr)
        return 1
    await session_store.revoke_sessions(db, name=args.name, at=time.time())
    print(f"changed the password of {args.name}; their sessions have ended")
    return 0


async def users_list(db: Database, args: argparse.Namespace) -> int:
    for u in await user_store.list_users(db):
        print(f"{u.name}\t{u.role}")
    return 0


async def users_remove(db: Database, args: argparse.Namespace) -> int:
    if not await user_store.remove_user(db, name=args.name):
        print(f"error: no user {args.name!r}", file=sys.stderr)
        return 1
    await session_store.revoke_sessions(db, name=args.name, at=time.time())  # their 15-day tokens die too
    print(f"removed {args.name}")
    return 0


async def users_ensure_demo(db: Database, args: argparse.Namespace) -> int:
    """For `make run` on a fresh machine: a demo login, only while no user exists at all and only for a server
    on loopback (CHAINLIT_HOST); a demo login left behind by real users or a wider address is removed."""
    if await user_store.list_users(db):
        if await retire_demo_if_not_allowed(db):
            print(f"removed the demo login {DEMO_USER!r} / {DEMO_PASSWORD!r}: "
                  + ("real users exist" if listens_on_loopback() else f"the app listens on {listen_host()}"))
        return 0
    if not listens_on_loopback():
        print(f"no demo login: the app listens on {listen_host()}, beyond loopback; add a user with "
              "`tollgate users add NAME --password-stdin`", file=sys.stderr)
        return 0
    await user_store.add_demo_user(db)
    print(f"created the demo login {DEMO_USER!r} / {DEMO_PASSWORD!r} (operator); "
          "add real users with `tollgate users add NAME --password-stdin` and remove it")
    return 0


def _table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A plain aligned table; numeric columns (`right`) are right-aligned."""
    right = right or set()
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


async def _known(db: Database, name: str) -> bool:
    if any(u.name == name for u in await user_store.list_users(db)):
        return True
    print(f"error: no user {name!r}", file=sys.stderr)
    return False


async def budget_set(db: Database, args: argparse.Namespace) -> int:
    if not await _known(db, args.name):
        return 1
    daily, monthly = await usage_store.get_budget(db, user=args.name)
    if args.daily is not None:
        daily = None if args.daily == "default" else to_nano(args.daily)
    if args.monthly is not None:
        monthly = None if args.monthly == "default" else to_nano(args.monthly)
    await usage_store.set_budget(db, user=args.name, daily_nanousd=daily, monthly_nanousd=monthly)
    return await budget_show(db, args)


async def budget_show(db: Database, args: argparse.Namespace) -> int:
    s = Settings()
    if args.name and not await _known(db, args.name):
        return 1
    names = [args.name] if args.name else [u.name for u in await user_store.list_users(db)]
    rows: list[dict[str, str]] = []
    for name in names:
        own_daily, own_monthly = await usage_store.get_budget(db, user=name)
        daily = own_daily if own_daily is not None else to_nano(s.user_daily_usd)
        monthly = own_monthly if own_monthly is not None else to_nano(s.user_monthly_usd)
        # Spend includes what running calls hold: that is what the next reservation is checked against.
        today = await usage_store.spent(db, scope="user_day", user=name)
        month = await usage_store.spent(db, scope="user_month", user=name)
        rows.append({"user": name, "today_usd": str(from_nano(today)), "daily_limit_usd": str(from_nano(daily)),
                     "daily_left_usd": str(from_nano(max(daily - today, 0))),
                     "daily_limit_is": "set" if own_daily is not None else "default",
                     "month_usd": str(from_nano(month)), "monthly_limit_usd": str(from_nano(monthly)),
                     "monthly_left_usd": str(from_nano(max(monthly - month, 0))),
                     "monthly_limit_is": "set" if own_monthly is not None else "default"})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0

    def money(r: dict[str, str], k: str) -> str:
        return fmt_usd(to_nano(Decimal(r[k])))

    print(_table(["user", "today", "daily limit", "left today", "month", "monthly limit", "left this month"],
                 [[r["user"], money(r, "today_usd"),
                   money(r, "daily_limit_usd") + (" (default)" if r["daily_limit_is"] == "default" else ""),
                   money(r, "daily_left_usd"), money(r, "month_usd"),
                   money(r, "monthly_limit_usd") + (" (default)" if r["monthly_limit_is"] == "default" else ""),
                   money(r, "monthly_left_usd")] for r in rows], right={1, 2, 3, 4, 5, 6}))
    return 0


async def usage(db: Database, args: argparse.Namespace) -> int:
    rows = await usage_store.usage_report(db, by=args.by, user=args.user, since_day=args.since)
    for r in rows:
        r["cost_usd"] = str(from_nano(int(r.pop("cost_nanousd") or 0)))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = ("calls", "input_tokens", "output_tokens", "cache_write", "cache_read")
    body = [[str(r["key"] if r["key"] is not None else "-"), *(f"{int(r[c] or 0):,}" for c in cols),
             f"${Decimal(r['cost_usd']):.6f}"] for r in rows]
    total = [sum(int(r[c] or 0) for r in rows) for c in cols]
    body.append(["total", *(f"{t:,}" for t in total), f"${sum(Decimal(r['cost_usd']) for r in rows):.6f}"])
    print(_table([args.by, "calls", "input", "output", "cache write", "cache read", "cost"], body,
                 right={1, 2, 3, 4, 5, 6}))
    return 0


async def db_purge(db: Database, args: argparse.Namespace) -> int:
    """Remove threads deleted longer ago than the retention period, with their records; the purge is logged."""
    days = args.older_than_days if args.older_than_days is not None else Settings().retention_days
    if days is None:
        print("error: no retention period: set TOLLGATE_RETENTION_DAYS or pass --older-than-days; nothing purged",
              file=sys.stderr)
        return 1
    p = await records.purge_deleted(db, older_than_days=days, by="cli")
    print(f"purged {p.threads} threads deleted over {days:g} days ago: {p.messages} messages, {p.approvals} "
          f"approvals, {p.tool_calls} tool calls; {p.model_calls_detached} model-call rows kept without their thread")
    return 0


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"days must be from 0 to 999999: {text!r}")
    return value


def _amount_or_default(text: str) -> Decimal | str:
    return "default" if text == "default" else _usd(text)


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tollgate", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    users = sub.add_parser("users", help="manage logins").add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--role", choices=user_store.ROLES, default="user")
    add.set_defaults(fn=users_add)
    users.add_parser("list").set_defaults(fn=users_list)
    rm = users.add_parser("remove")
    rm.add_argument("name")
    rm.set_defaults(fn=users_remove)
    pw = users.add_parser("set-password", help="a new password; ends the user's sessions")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw.set_defaults(fn=users_set_password)
    demo = users.add_parser("ensure-demo", help="create demo/demo if there are no users (loopback only)")
    demo.set_defaults(fn=users_ensure_demo)
    budget = sub.add_parser("budget", help="per-user limits").add_subparsers(dest="action", required=True)
    bset = budget.add_parser("set")
    bset.add_argument("name")
    bset.add_argument("--daily", type=_amount_or_default, help="USD per UTC day, or 'default'")
    bset.add_argument("--monthly", type=_amount_or_default, help="USD per UTC month, or 'default'")
    bset.add_argument("--json", action="store_true")
    bset.set_defaults(fn=budget_set)
    bshow = budget.add_parser("show")
    bshow.add_argument("name", nargs="?")
    bshow.add_argument("--json", action="store_true")
    bshow.set_defaults(fn=budget_show)
    use = sub.add_parser("usage", help="what model calls cost")
    use.add_argument("--user")
    use.add_argument("--since", type=_day, help="first UTC day, YYYY-MM-DD")
    use.add_argument("--by", choices=("user", "day", "model", "thread"), default="user")
    use.add_argument("--json", action="store_true")
    use.set_defaults(fn=usage)
    db = sub.add_parser("db", help="records kept in the database").add_subparsers(dest="action", required=True)
    purge = db.add_parser("purge", help="remove threads deleted longer ago than the retention period")
    purge.add_argument("--older-than-days", type=_days, help="default: TOLLGATE_RETENTION_DAYS")
    purge.set_defaults(fn=db_purge)
    db.add_parser("upgrade", help="create the schema or upgrade it to this version's newest revision").set_defaults(
        fn=db_upgrade, upgrade_first=False)
    current = db.add_parser("current", help="the database's schema revision and this version's newest")
    current.add_argument("--json", action="store_true")
    current.set_defaults(fn=db_current, upgrade_first=False)
    sub.add_parser("serve", help="serve the chat and the operator console: --host, --port (CHAINLIT_HOST, "
                   "CHAINLIT_PORT)", add_help=False)  # its options are ui/web.py's
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the server (ui/web.py): imported only here, the other commands never load chainlit
        from ui.web import main as serve

        return serve(argv[1:])
    args = parser().parse_args(argv)
    fn: Callable[[Database, argparse.Namespace], Awaitable[int]] = args.fn

    async def run() -> int:
        try:
            db = await _db(upgrade=getattr(args, "upgrade_first", True))
        except schema.SchemaError as e:
            print(f"error: {e}", file=sys.stderr)
            return SCHEMA_ERROR_EXIT
        try:
            return await fn(db, args)
        except schema.SchemaError as e:
            print(f"error: {e}", file=sys.stderr)
            return SCHEMA_ERROR_EXIT
        finally:
            await db.close()

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
