"""The client's address for the login limits: chainlit's password callback gets no request, so this ASGI
middleware puts the peer address in a context variable for the duration of each request.

The peer is uvicorn's `scope["client"]`. uvicorn rewrites it from X-Forwarded-For when the peer is in
FORWARDED_ALLOW_IPS, which it defaults to 127.0.0.1: any local process could then claim any address.
`trust_forwarded_for_only_from_proxy` (called while ui/web.py builds the app, before uvicorn is configured)
sets that list to TOLLGATE_TRUSTED_PROXY, empty by default."""

from __future__ import annotations

import os
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

UNKNOWN = "unknown"
_address: ContextVar[str] = ContextVar("tollgate_client_address", default=UNKNOWN)


def trust_forwarded_for_only_from_proxy() -> None:
    os.environ["FORWARDED_ALLOW_IPS"] = os.environ.get("TOLLGATE_TRUSTED_PROXY", "")


def client_address() -> str:
    return _address.get()


class ClientAddress:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = _address.set(str(client[0]) if client else UNKNOWN)
        try:
            await self.app(scope, receive, send)
        finally:
            _address.reset(token)
