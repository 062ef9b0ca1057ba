"""Users' own MCP servers through chainlit's MCP button: off unless TOLLGATE_USER_MCP=on.

When on, only Streamable HTTP servers are accepted (stdio would run a command on this machine; SSE is the
deprecated transport), and the URL must pass the same address guard as fetch_url (tools/netguard.py): no
loopback, private, link-local or other non-public address unless TOLLGATE_USER_MCP_ALLOW_ADDRESSES lists it.
The guard runs in `UserMcpGate`, before chainlit's /mcp handler opens any connection, because the handler
connects first and only then calls `on_mcp_connect`; a URL that passed is added to chainlit's own allowlist
(`features.mcp.user_servers.allowed_urls`), whose per-request check binds every request of that connection to
the URL and refuses redirects. The tools are registered for the connecting user alone (tools/mcp/user_servers.py).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from chainlit.config import config as chainlit_config
from chainlit.context import context
from chainlit.mcp import HttpMcpConnection, McpConnection
from mcp import ClientSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tools.errors import ToolError
from tools.netguard import FetchPolicy, parse_url, pinned_address
from ui import chat
from ui.sessions import token_from

log = logging.getLogger("tollgate.mcp")
SETTING = "TOLLGATE_USER_MCP"
ALLOW_SETTING = "TOLLGATE_USER_MCP_ALLOW_ADDRESSES"
BODY_MAX_BYTES = 64_000
OFF = ("Connecting your own MCP servers is turned off on this server (the operator can turn it on with "
       "TOLLGATE_USER_MCP=on).")
STDIO_REFUSED = ("stdio MCP servers are operator-only: a stdio server is a command run on the server machine. "
                 "Connect a Streamable HTTP server (its URL) instead.")
SSE_REFUSED = "SSE MCP servers are not accepted: connect the server's Streamable HTTP endpoint instead."


def enabled() -> bool:
    value = os.environ.get(SETTING, "off").strip().lower()
    if value not in ("on", "off", ""):
        raise ValueError(f"{SETTING} must be on or off, not {value!r}")
    return value == "on"


def address_policy() -> FetchPolicy:
    allowed = tuple(a.strip() for a in os.environ.get(ALLOW_SETTING, "").split(",") if a.strip())
    try:
        return FetchPolicy(allow_addresses=allowed)
    except ValueError as e:
        raise ValueError(f"{ALLOW_SETTING}: {e}") from None


def configure() -> None:
    """Turn chainlit's MCP button on or off to match TOLLGATE_USER_MCP (a bad value stops start-up)."""
    on = enabled()
    address_policy()
    mcp = chainlit_config.features.mcp
    mcp.enabled = on
    mcp.user_servers.enabled = on
    mcp.servers = []  # no chainlit-named servers: the operator's are configured in TOLLGATE_MCP_CONFIG
    mcp.user_servers.allowed_urls = []  # filled with the URLs UserMcpGate checked


class Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


async def check_connect(payload: Any) -> str:
    """The URL to allow for this connect request; raises Refused with the user-facing reason."""
    if not enabled():
        raise Refused(403, OFF)
    if not isinstance(payload, dict):
        raise Refused(400, "expected a JSON object")
    kind, url = payload.get("clientType"), payload.get("url")
    if kind == "stdio" or "command" in payload or "fullCommand" in payload:
        raise Refused(400, STDIO_REFUSED)
    if kind == "sse":
        raise Refused(400, SSE_REFUSED)
    if kind != "streamable-http" or not isinstance(url, str):
        raise Refused(400, "give the URL of a Streamable HTTP MCP server (clientType streamable-http)")
    policy = address_policy()
    try:
        parsed = parse_url(url, policy)
        await pinned_address(parsed, policy)
    except ToolError as e:
        raise Refused(400, f"MCP server URL refused: {e}") from None
    return url


class UserMcpGate:
    """Answers POST /mcp itself unless the request passes check_connect; a passing one goes on to chainlit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/mcp" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if not enabled():  # before reading anything: the feature is off
            await JSONResponse({"detail": OFF}, status_code=403)(scope, receive, send)
            return
        if token_from(request.cookies, request.headers.get("authorization")) is None:
            await JSONResponse({"detail": "log in first"}, status_code=401)(scope, receive, send)
            return
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > BODY_MAX_BYTES:
                await JSONResponse({"detail": "request too large"}, status_code=413)(scope, receive, send)
                return
        try:
            url = await check_connect(json.loads(body or b"null"))
        except json.JSONDecodeError:
            await JSONResponse({"detail": "expected a JSON object"}, status_code=400)(scope, receive, send)
            return
        except Refused as e:
            log.info("refused a user MCP connect: %s", e.detail)
            await JSONResponse({"detail": e.detail}, status_code=e.status)(scope, receive, send)
            return
        allowed = chainlit_config.features.mcp.user_servers.allowed_urls
        if url not in allowed:
            allowed.append(url)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _user() -> str:
    user = context.session.user if context.session else None
    if user is None:
        raise PermissionError("log in first")
    return str(user.identifier)


async def on_connect(connection: McpConnection, session: ClientSession) -> None:
    """chainlit's on_mcp_connect: register the server's tools for this user. Raising makes chainlit close the
    connection and show the message."""
    if not enabled():
        raise PermissionError(OFF)
    if not isinstance(connection, HttpMcpConnection):  # the gate already refused these: fail closed anyway
        raise PermissionError(STDIO_REFUSED if connection.clientType == "stdio" else SSE_REFUSED)
    user = _user()
    rt = await chat.runtime()
    assert rt.user_mcp is not None
    server = await rt.user_mcp.add(user=user, name=connection.name, url=connection.url, client=session)
    log.info("user %s connected MCP server %s (%s): %d tools", user, server.name, connection.url, len(server.tools))


async def on_disconnect(name: str, session: ClientSession) -> None:
    rt = await chat.runtime()
    if rt.user_mcp is not None and rt.user_mcp.remove(user=_user(), name=name, client=session):
        log.info("user %s disconnected MCP server %s", _user(), name)
