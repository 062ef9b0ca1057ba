"""MCP servers that users connect themselves (chainlit's MCP button, when TOLLGATE_USER_MCP=on).

Held per user, apart from the operator's shared registry: a user's tools are listed and callable only in that
user's turns (the agent asks `tools_of(owner)`). Every one of them is high-risk: it always asks, "approve always"
is never offered, and the operator's `read_only` list never applies (the server is not the operator's).
Annotations stay hints shown on the card. The session is the one chainlit opened (it owns the transport task);
a call on a session that went away is an error result, never a failed turn.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from mcp import ClientSession

from tools.errors import ToolError
from tools.mcp.config import SERVER_NAME
from tools.mcp.servers import result_text
from tools.mcp.tooldefs import McpTool, build_tool, clean_text
from tools.registry import Tool, ToolContext

MAX_SERVERS_PER_USER = 5
MAX_TOOLS_PER_SERVER = 64
LIST_TIMEOUT_S = 20.0


class UserServerRefused(ValueError):
    """The user's server cannot be added; the message says why, for the user."""


@dataclass(frozen=True)
class UserServer:
    user: str
    name: str
    url: str
    tools: tuple[McpTool, ...]
    client: ClientSession


class UserServers:
    def __init__(self, *, timeout_s: float, reserved: frozenset[str] = frozenset()) -> None:
        self.timeout_s = timeout_s
        self.reserved = reserved  # the operator's server names: a user's server may not shadow them
        self._by_user: dict[str, dict[str, UserServer]] = {}

    def tools_of(self, user: str) -> list[Tool]:
        servers = self._by_user.get(user, {})
        return [t for name in sorted(servers) for t in servers[name].tools]

    def servers_of(self, user: str) -> list[UserServer]:
        servers = self._by_user.get(user, {})
        return [servers[n] for n in sorted(servers)]

    @property
    def connected(self) -> int:
        return sum(len(s) for s in self._by_user.values())

    async def add(self, *, user: str, name: str, url: str, client: ClientSession) -> UserServer:
        """List the server's tools and register them for `user` alone (replacing a server of the same name)."""
        if not SERVER_NAME.fullmatch(name):
            raise UserServerRefused(
                f"server name {clean_text(name, 40)!r}: use lower-case letters and digits, single - or _ between "
                "(it prefixes every tool name, e.g. myserver__search)")
        if name in self.reserved:
            raise UserServerRefused(f"server name {name!r} is taken by a server this deployment configures")
        mine = self._by_user.get(user, {})
        if name not in mine and len(mine) >= MAX_SERVERS_PER_USER:
            raise UserServerRefused(f"at most {MAX_SERVERS_PER_USER} servers of your own at a time")
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                listed = await client.list_tools()
        except TimeoutError:
            raise UserServerRefused(f"the server did not list its tools within {LIST_TIMEOUT_S:g} s") from None
        specs = listed.tools
        if len(specs) > MAX_TOOLS_PER_SERVER:
            raise UserServerRefused(f"the server offers {len(specs)} tools; at most {MAX_TOOLS_PER_SERVER} are taken")
        tools: dict[str, McpTool] = {}
        for spec in specs:
            try:
                t = build_tool(name, spec, read_only=False, timeout_s=self.timeout_s + 1,
                               call=_caller(client, name, self.timeout_s), provided_by=user)
            except ValueError:
                continue  # a tool that cannot be offered (name, schema) is left out, as for the operator's
            tools.setdefault(t.name, t)
        server = UserServer(user=user, name=name, url=url, tools=tuple(tools[n] for n in sorted(tools)),
                            client=client)
        self._by_user.setdefault(user, {})[name] = server
        return server

    def remove(self, *, user: str, name: str, client: ClientSession | None = None) -> bool:
        """Drop the user's server; with `client`, only if it is still that session (a reconnect replaced it)."""
        mine = self._by_user.get(user, {})
        found = mine.get(name)
        if found is None or (client is not None and found.client is not client):
            return False
        del mine[name]
        if not mine:
            self._by_user.pop(user, None)
        return True


def _caller(client: ClientSession, server: str, timeout_s: float) -> Any:
    async def call(ctx: ToolContext, tool: str, args: dict[str, Any]) -> str:
        try:
            async with asyncio.timeout(timeout_s):
                result = await client.call_tool(tool, args, read_timeout_seconds=timedelta(seconds=timeout_s))
        except TimeoutError:
            raise ToolError(f"your MCP server {server}: {tool} timed out after {timeout_s:g} s") from None
        except Exception as e:  # the session went away or the server failed: an error result for the model
            raise ToolError(f"your MCP server {server}: {clean_text(str(e) or type(e).__name__, 300)}. "
                            "The call may or may not have taken effect.") from None
        text = result_text(result)
        if result.isError:
            raise ToolError(text or "the server reported an error")
        return text

    return call
