"""Refuse every request that says it comes from another origin, before chainlit sees it.

Chainlit builds its socket.io server with `cors_allowed_origins=[]`, which in python-engineio means "no
origin check at all", and the HTTP CORS list does not cover websockets (browsers apply no CORS to them).
A page on the same site (another port: the same *site*, so the SameSite=lax cookie goes along) could open
the chat socket as the logged-in user. This ASGI middleware sits outside chainlit's whole app, so it covers
the socket.io handshakes (websocket and polling, whatever chainlit's mount path) and every other route
(a cross-origin form POST is refused too), without touching chainlit internals.

A request with no Origin header passes: browsers send Origin on every websocket handshake and every
cross-origin or non-GET request, so its absence means a same-origin GET or a non-browser client, which
the login cookie (not the origin) has to stop. `Origin: null` (sandboxed frames, file:// pages) is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

log = logging.getLogger("tollgate")
POLICY_VIOLATION = 1008  # websocket close code: the handshake is answered 403 before any accept


def normalise(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class OriginGuard:
    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(normalise(o) for o in allowed)

    def refused_origin(self, scope: Scope) -> str | None:
        """The first Origin header not in the allowed list, or None when the request may pass."""
        for key, value in scope.get("headers", ()):
            if key == b"origin":
                origin: str = value.decode("latin-1")
                if normalise(origin) not in self.allowed:
                    return origin
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and (origin := self.refused_origin(scope)) is not None:
            log.warning("refused a %s request to %s from origin %r (allowed: %s)", scope["type"],
                        scope.get("path", ""), origin[:200], ", ".join(sorted(self.allowed)))
            if scope["type"] == "websocket":
                await WebSocketClose(code=POLICY_VIOLATION)(scope, receive, send)
            else:
                await PlainTextResponse("origin not allowed", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)
