"""Process set-up: auth secret and origins (before chainlit reads its settings), the heap after start-up."""

from __future__ import annotations

import gc
import logging
import os
import secrets
from pathlib import Path

from store.db import database_url
from store.filemodes import secure_data_dir

log = logging.getLogger("tollgate")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class SharedSettingMissing(SystemExit):
    """A setting every process of a multi-process deployment must share is not set: refuse to start."""


def shares_database(data_dir: Path) -> bool:
    """PostgreSQL means other processes may serve the same users: what they must agree on cannot be local."""
    return database_url(data_dir).startswith("postgresql")


def ensure_auth_secret(data_dir: Path) -> None:
    """Use CHAINLIT_AUTH_SECRET from the env, else the one kept in the data dir (made on first run).
    With PostgreSQL the env is required: a secret made per data dir would log users out at every hop."""
    if os.environ.get("CHAINLIT_AUTH_SECRET"):
        return
    if shares_database(data_dir):
        raise SharedSettingMissing("CHAINLIT_AUTH_SECRET is required when TOLLGATE_DATABASE_URL is PostgreSQL: every "
                                   "app process must sign sessions with the same secret (README \"Past one machine\")")
    secure_data_dir(data_dir)
    path = data_dir / "auth_secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    os.environ["CHAINLIT_AUTH_SECRET"] = path.read_text().strip()


def allowed_origins() -> list[str]:
    """The served address only (HOST/PORT), unless TOLLGATE_ALLOWED_ORIGINS names others (a proxy)."""
    explicit = os.environ.get("TOLLGATE_ALLOWED_ORIGINS")
    if explicit:
        return [o.strip() for o in explicit.split(",") if o.strip()]
    host = listen_host()
    port = os.environ.get("CHAINLIT_PORT") or os.environ.get("PORT") or "8000"
    hosts = ["127.0.0.1", "localhost"] if host in LOOPBACK else [host]
    return [f"http://{h}:{port}" for h in hosts]


def listen_host() -> str:
    """The address the server listens on (`tollgate serve --host` sets CHAINLIT_HOST before building the app)."""
    return os.environ.get("CHAINLIT_HOST") or os.environ.get("HOST") or "127.0.0.1"


def listens_on_loopback() -> bool:
    return listen_host() in LOOPBACK


def tune_gc_after_startup() -> None:
    """Keep the cyclic collector's pauses off the chat (each one stops the event loop for every session).

    Freeze what is alive after start-up (modules, chainlit, the SDK, SQLAlchemy: most of the heap): full
    collections walked all of it, 90-320 ms each, at any load. Then collect the young generation every
    5,000 allocations instead of 700: full collections get rarer, while a young one stays under ~40 ms
    (20,000 made those 40-110 ms). Measured with bench/concurrency_server.py, 200 sessions, think time."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 10, 10)
