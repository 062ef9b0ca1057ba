"""`tollgate`: admin commands over the project's store (users, budgets, usage)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation

from agent.config import Settings
from agent.pricing import fmt_usd, from_nano, to_nano
from store import usage as usage_store
from store import users as user_store
from store.db import Database

DEMO_USER, DEMO_PASSWORD = "demo", "demo"


def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount in USD: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("amounts cannot be negative")
    return value


async def _db() -> Database:
    db = Database.for_data_dir(Settings().data_dir)
    await db.create_schema()
    return db


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
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"added {user.name} ({user.role})")
    return 0


async def users_list(db: Database, args: argparse.Namespace) -> int:
    for u in await user_store.list_users(db):
        print(f"{u.name}\t{u.role}")
    return 0


async def users_remove(db: Database, args: argparse.Namespace) -> int:
    if not await user_store.remove_user(db, name=args.name):
        print(f"error: no user {args.name!r}", file=sys.stderr)
        return 1
    print(f"removed {args.name}")
    return 0


async def users_ensure_demo(db: Database, args: argparse.Namespace) -> int:
    """For `make run` on a fresh machine: a demo login, only while no user exists at all."""
    if await user_store.list_users(db):
        return 0
    await user_store.add_user(db, name=DEMO_USER, password=DEMO_PASSWORD, role="operator")
    print(f"created the demo login {DEMO_USER!r} / {DEMO_PASSWORD!r} (operator); "
          "add real users with `tollgate users add NAME --password-stdin` and remove it")
    return 0


async def budget_set(db: Database, args: argparse.Namespace) -> int:
    daily, monthly = await usage_store.get_budget(db, user=args.name)
    if args.daily is not None:
        daily = to_nano(args.daily)
    if args.monthly is not None:
        monthly = to_nano(args.monthly)
    try:
        await usage_store.set_budget(db, user=args.name, daily_nanousd=daily, monthly_nanousd=monthly)
    except LookupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return await budget_show(db, args)


async def budget_show(db: Database, args: argparse.Namespace) -> int:
    s = Settings()
    names = [args.name] if args.name else [u.name for u in await user_store.list_users(db)]
    rows = []
    for name in names:
        daily, monthly = await usage_store.get_budget(db, user=name)
        daily = daily if daily is not None else to_nano(s.user_daily_usd)
        monthly = monthly if monthly is not None else to_nano(s.user_monthly_usd)
        today = await usage_store.spent(db, scope="user_day", user=name)
        month = await usage_store.spent(db, scope="user_month", user=name)
        rows.append({"user": name, "today": str(from_nano(today)), "daily_limit": str(from_nano(daily)),
                     "month": str(from_nano(month)), "monthly_limit": str(from_nano(monthly))})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("user\ttoday\tdaily limit\tmonth\tmonthly limit")
        for r in rows:
            print("\t".join(fmt_usd(to_nano(Decimal(r[k]))) if k != "user" else r[k] for k in r))
    return 0


async def usage(db: Database, args: argparse.Namespace) -> int:
    rows = await usage_store.usage_report(db, by=args.by, user=args.user, since_day=args.since)
    for r in rows:
        r["cost_usd"] = str(from_nano(int(r.pop("cost_nanousd") or 0)))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{args.by}\tcalls\tinput\toutput\tcache write\tcache read\tcost")
    for r in rows:
        print(f"{r['key']}\t{r['calls']}\t{r['input_tokens']}\t{r['output_tokens']}\t{r['cache_write']}\t"
              f"{r['cache_read']}\t${Decimal(r['cost_usd']):.6f}")
    return 0


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
    users.add_parser("ensure-demo", help="create demo/demo if there are no users").set_defaults(fn=users_ensure_demo)
    budget = sub.add_parser("budget", help="per-user limits").add_subparsers(dest="action", required=True)
    bset = budget.add_parser("set")
    bset.add_argument("name")
    bset.add_argument("--daily", type=_usd, help="USD per UTC day")
    bset.add_argument("--monthly", type=_usd, help="USD per UTC month")
    bset.add_argument("--json", action="store_true")
    bset.set_defaults(fn=budget_set)
    bshow = budget.add_parser("show")
    bshow.add_argument("name", nargs="?")
    bshow.add_argument("--json", action="store_true")
    bshow.set_defaults(fn=budget_show)
    use = sub.add_parser("usage", help="what model calls cost")
    use.add_argument("--user")
    use.add_argument("--since", help="first UTC day, YYYY-MM-DD")
    use.add_argument("--by", choices=("user", "day", "model", "thread"), default="user")
    use.add_argument("--json", action="store_true")
    use.set_defaults(fn=usage)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    fn: Callable[[Database, argparse.Namespace], Awaitable[int]] = args.fn

    async def run() -> int:
        db = await _db()
        try:
            return await fn(db, args)
        finally:
            await db.close()

    return asyncio.run(run())



if __name__ == "__main__":
    sys.exit(main())
