"""Puts the request guards around Tollgate's app (ui/web.py, which mounts chainlit): origin first (outermost),
then the client's address (login limits), then revoked sessions. Each guard is a small ASGI middleware in its
own module."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from store.db import Database
from ui import chat, user_mcp
from ui.client_address import ClientAddress, trust_forwarded_for_only_from_proxy
from ui.origin_guard import OriginGuard
from ui.sessions import SessionGuard
from ui.setup import allowed_origins, listen_host, listens_on_loopback

log = logging.getLogger("tollgate")


async def _db() -> Database:
    return (await chat.runtime()).db


def guard_doors(app: FastAPI) -> None:
    trust_forwarded_for_only_from_proxy()  # before ui/web.py builds uvicorn's Config
    # add_middleware puts each new one outside the previous ones: add the innermost first.
    user_mcp.configure()  # chainlit's MCP button follows TOLLGATE_USER_MCP (off by default)
    app.add_middleware(user_mcp.UserMcpGate)  # checks a user's MCP server URL before chainlit connects to it
    app.add_middleware(SessionGuard, db=_db)
    app.add_middleware(ClientAddress)
    app.add_middleware(OriginGuard, allowed=allowed_origins())
    if not listens_on_loopback() and not os.environ.get("TOLLGATE_ALLOWED_ORIGINS"):
        log.warning("listening on %s without TOLLGATE_ALLOWED_ORIGINS: browsers will be refused unless they use "
                    "%s; set it to the address users type (e.g. https://chat.example.org)", listen_host(),
                    ", ".join(allowed_origins()))
