"""Who may log in: the password, the failure limits per account and per address, and the demo login's rules.

Limits: once an account name (as typed, existing or not, so the answer reveals nothing) or a client address
has `login_failures_per_*` failures within `login_window_s`, every attempt is refused, the right password
too, until the oldest failures leave the window. Attempts refused that way are not counted (an attacker
cannot keep an account locked for longer than by failing, and cannot grow the table). The demo login
demo/demo works only while it is the only user and the app listens on loopback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from agent.config import Settings
from store import logins as login_store
from store import sessions as session_store
from store import users as user_store
from store.db import Database
from store.passwords import DEMO_PASSWORD, DEMO_USER
from store.values import User
from ui.setup import listens_on_loopback

log = logging.getLogger("tollgate")


class Refusal(Enum):
    BAD_CREDENTIALS = "bad_credentials"
    RATE_LIMITED = "rate_limited"
    DEMO_REFUSED = "demo_refused"


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    refusal: Refusal | None = None


@dataclass(frozen=True)
class LoginLimits:
    per_account: int
    per_address: int
    window_s: float

    @classmethod
    def from_settings(cls, s: Settings) -> LoginLimits:
        return cls(s.login_failures_per_account, s.login_failures_per_address, s.login_window_s)


async def demo_allowed(db: Database) -> bool:
    """demo/demo may log in only on a loopback-only server where no other user exists."""
    return listens_on_loopback() and all(u.name == DEMO_USER for u in await user_store.list_users(db))


async def attempt_login(db: Database, *, name: str, password: str, address: str, limits: LoginLimits,
                        clock: Callable[[], float] = time.time) -> LoginResult:
    now = clock()
    # The attempt is counted before the password is checked (store/logins.py): concurrent guesses, here or
    # on another process, cannot all pass the limit check at once.
    attempt = await login_store.begin_attempt(db, account=name, address=address, at=now, since=now - limits.window_s,
                                              per_account=limits.per_account, per_address=limits.per_address)
    if attempt is None:
        log.warning("login refused by the failure limits: account %r or address %s reached its limit in %.0f s",
                    name[:64], address, limits.window_s)
        return LoginResult(None, Refusal.RATE_LIMITED)
    refusal: Refusal | None = None
    user = await user_store.authenticate(db, name=name, password=password)
    if user is not None and name == DEMO_USER and password == DEMO_PASSWORD and not await demo_allowed(db):
        log.warning("refused the demo login demo/demo: other users exist or the app listens beyond loopback")
        user, refusal = None, Refusal.DEMO_REFUSED
    if user is None:
        return LoginResult(None, refusal or Refusal.BAD_CREDENTIALS)
    await login_store.forgive(db, attempt_id=attempt)
    return LoginResult(user)


async def retire_demo(db: Database, *, why: str) -> bool:
    """Remove demo/demo (and end its sessions) if it exists with its default password; True if it did."""
    if await user_store.get_user(db, name=DEMO_USER) is None or not await user_store.is_default_demo(db):
        return False
    await user_store.remove_user(db, name=DEMO_USER)
    await session_store.revoke_sessions(db, name=DEMO_USER, at=time.time())
    log.warning("removed the demo login demo/demo: %s", why)
    return True


async def retire_demo_if_not_allowed(db: Database) -> bool:
    if await user_store.get_user(db, name=DEMO_USER) is None or await demo_allowed(db):
        return False
    why = "other users exist" if listens_on_loopback() else "the app listens beyond loopback"
    return await retire_demo(db, why=why)
