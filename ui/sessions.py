"""Revoked sessions: chainlit's JWT cookie lives 15 days and chainlit keeps no record of it, so logout,
`tollgate users remove` and a new password record a per-user cut-off in the store (store/sessions.py), and
this ASGI middleware enforces it on every HTTP request and socket handshake.

A token that is revoked (issued at or before the cut-off) or whose user no longer exists is removed from
the request, cookie and Authorization header alike, and the browser is told to drop the cookie: to
chainlit it is a request with no login, so its own checks answer (401 on the API, the socket refused,
the login page still loads). A token that fails its signature or expiry is left to chainlit, which refuses it.

When a token was issued: `login_at`, the precise login time ui/chat.authenticate puts in the user's
metadata (signed inside the JWT; kept when chainlit's /auth/jwt re-issues a token), else the JWT's `iat`
(whole seconds)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jwt
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store import sessions as session_store
from store.db import Database

log = logging.getLogger("tollgate")
# Chainlit serves these to anyone, logged in or not: no token check (a page load fetches dozens of them,
# and a check costs a JWT decode and a store read, ~0.3 + ~3 ms measured on this loaded 2-core machine).
PUBLIC_PREFIXES = ("/assets/", "/public/", "/favicon")


def cookie_name() -> str:
    return os.environ.get("CHAINLIT_AUTH_COOKIE_NAME", "access_token")  # chainlit's own setting and default


def token_from(cookies: Mapping[str, str], authorization: str | None) -> str | None:
    """The login token as chainlit finds it: the cookie (or its numbered chunks), else a Bearer header."""
    name = cookie_name()
    if token := cookies.get(name):
        return token
    chunks, i = [], 0
    while f"{name}_{i}" in cookies:
        chunks.append(cookies[f"{name}_{i}"])
        i += 1
    if chunks:
        return "".join(chunks)
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return None


def claims_of(token: str) -> dict[str, Any] | None:
    """The token's claims if its signature and expiry hold, else None (chainlit refuses it anyway)."""
    secret = os.environ.get("CHAINLIT_AUTH_SECRET")
    if not secret:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        return None
    return claims


def issued_at(claims: Mapping[str, Any]) -> float:
    metadata = claims.get("metadata")
    login_at = metadata.get("login_at") if isinstance(metadata, dict) else None
    if isinstance(login_at, int | float):
        return float(login_at)
    iat = claims.get("iat")
    return float(iat) if isinstance(iat, int | float) else 0.0


async def end_sessions_of_token(db: Database, token: str | None) -> str | None:
    """Logout: revoke every session of the token's user (from now); the user's name, or None if no valid token."""
    claims = claims_of(token) if token else None
    name = claims.get("identifier") if claims else None
    if not isinstance(name, str):
        return None
    await session_store.revoke_sessions(db, name=name, at=time.time())
    log.info("logout: ended every session of %s", name)
    return name


def _headers(scope: Scope) -> tuple[dict[str, str], str | None]:
    cookies: dict[str, str] = {}
    authorization = None
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            cookies.update(cookie_parser(value.decode("latin-1")))
        elif key == b"authorization":
            authorization = value.decode("latin-1")
    return cookies, authorization


def _without_credentials(scope: Scope) -> Scope:
    name = cookie_name()
    headers = []
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            continue
        if key == b"cookie":
            kept = [c for c in value.decode("latin-1").split(";")
                    if not c.strip().split("=", 1)[0].strip().startswith(name)]
            if not kept:
                continue
            value = ";".join(kept).strip().encode("latin-1")
        headers.append((key, value))
    return {**scope, "headers": headers}


class SessionGuard:
    def __init__(self, app: ASGIApp, db: Callable[[], Awaitable[Database]]) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" or (scope["type"] == "http"
                                            and not scope.get("path", "").startswith(PUBLIC_PREFIXES)):
            cookies, authorization = _headers(scope)
            token = token_from(cookies, authorization)
            claims = claims_of(token) if token else None
            name = claims.get("identifier") if claims else None
            if claims is not None and not (isinstance(name, str) and await session_store.session_valid(
                    await self.db(), name=name, issued_at=issued_at(claims))):
                log.info("refused a revoked session of %r on %s", name, scope.get("path", ""))
                scope = _without_credentials(scope)
                if scope["type"] == "http":
                    send = _dropping_cookie(send)
        await self.app(scope, receive, send)


def _dropping_cookie(send: Send) -> Send:
    expired = f"{cookie_name()}=; Max-Age=0; Path=/; HttpOnly; SameSite=lax".encode("latin-1")

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", expired)]}
        await send(message)

    return wrapped
