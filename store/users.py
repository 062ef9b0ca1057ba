"""Users and their hashed passwords (argon2id via argon2-cffi)."""

from __future__ import annotations

import asyncio
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, insert, select, update

from store.db import Database
from store.models import USERS
from store.passwords import DEMO_PASSWORD, DEMO_USER, check_password
from store.values import User

_hasher = PasswordHasher()
_users = USERS
ROLES = ("user", "operator")
# Verified against when the name is unknown, so a miss costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("tollgate-timing-equaliser")


class UserExists(ValueError):
    pass


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def _check_name(name: str) -> None:
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError("user names are 1-64 letters, digits, '.', '-' or '_'")


async def add_user(db: Database, *, name: str, password: str, role: str = "user") -> User:
    """Raises WeakPassword (a ValueError) when the password policy refuses it (store/passwords.py)."""
    _check_role(role)
    _check_name(name)
    check_password(name=name, password=password)
    return await _insert(db, name=name, password=password, role=role)


async def add_demo_user(db: Database) -> User:
    """The one login that skips the password policy: demo/demo, for a loopback demo (cli `ensure-demo`)."""
    return await _insert(db, name=DEMO_USER, password=DEMO_PASSWORD, role="operator")


async def _insert(db: Database, *, name: str, password: str, role: str) -> User:
    password_hash = await asyncio.to_thread(_hasher.hash, password)  # slow by design: off the loop and the writer

    def add(conn: Connection) -> None:
        if conn.execute(select(_users.c.id).where(_users.c.name == name)).first() is not None:
            raise UserExists(f"user {name!r} already exists")
        conn.execute(insert(_users).values(name=name, password_hash=password_hash, role=role, created_at=time.time()))

    await db.transact(add)
    return User(name=name, role=role)


async def authenticate(db: Database, *, name: str, password: str) -> User | None:
    async with db.read() as conn:
        row = (await conn.execute(select(_users.c.password_hash, _users.c.role)
                                  .where(_users.c.name == name))).first()
    try:  # ~100 ms of CPU by design: off the event loop, or every chat stalls while someone logs in
        await asyncio.to_thread(_hasher.verify, row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return User(name=name, role=row.role) if row else None


async def set_password(db: Database, *, name: str, password: str) -> bool:
    """A new password (policy-checked); False when there is no such user. Revoking the user's sessions is the
    caller's part (store.sessions.revoke_sessions)."""
    check_password(name=name, password=password)
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    return await db.transact(lambda conn: bool(conn.execute(
        update(_users).where(_users.c.name == name).values(password_hash=password_hash)).rowcount))


async def is_default_demo(db: Database) -> bool:
    """Whether the demo login exists with its default password demo/demo (costs one hash check)."""
    return await authenticate(db, name=DEMO_USER, password=DEMO_PASSWORD) is not None


async def get_user(db: Database, *, name: str) -> User | None:
    async with db.read() as conn:
        row = (await conn.execute(select(_users.c.role).where(_users.c.name == name))).first()
    return User(name=name, role=row.role) if row else None


async def get_user_since(db: Database, *, name: str) -> tuple[User, float] | None:
    """The user and when they were created, in one read (chainlit asks for both on every message)."""
    stmt = select(_users.c.role, _users.c.created_at).where(_users.c.name == name)
    row = await db.query(lambda conn: conn.execute(stmt).first())
    return (User(name=name, role=row.role), row.created_at) if row else None


async def list_users(db: Database) -> list[User]:
    async with db.read() as conn:
        rows = await conn.execute(select(_users.c.name, _users.c.role).order_by(_users.c.name))
        return [User(name=r.name, role=r.role) for r in rows]


async def remove_user(db: Database, *, name: str) -> bool:
    return await db.transact(lambda conn: bool(conn.execute(delete(_users).where(_users.c.name == name)).rowcount))


def user_id_of(name: str):  # type: ignore[no-untyped-def]
    """A scalar subquery resolving a user name to its id inside another statement."""
    return select(_users.c.id).where(_users.c.name == name).scalar_subquery()
