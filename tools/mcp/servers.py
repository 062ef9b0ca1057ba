"""The operator's MCP servers at run time: listing at start-up, one session per user, reconnects with backoff.

Each user gets a session of their own with each server (a process for stdio, an MCP session for HTTP), so
whatever a server keeps per session never crosses between users. A server that is down or dies is an error
result for the model and a warning in the log, never a failed turn; the next call after a death reconnects
at once, repeated failures wait (backoff doubling to BACKOFF_MAX_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp import types

from tools.errors import ToolError
from tools.mcp.config import ServerConfig
from tools.mcp.connection import Connection, ServerUnavailable
from tools.mcp.tooldefs import McpTool, build_tool, clean_text
from tools.registry import Tool, ToolContext

log = logging.getLogger("tollgate.mcp")
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
RESULT_MAX_CHARS = 1_000_000  # memory bound; the model sees at most TOLLGATE_TOOL_RESULT_MAX_CHARS of it


@dataclass(frozen=True)
class ServerStatus:
    name: str
    transport: str
    up: bool
    tools: int
    sessions: int
    last_error: str
    state: str  # connected | reconnecting (failed; retried with backoff) | idle (not connected now; next call connects)
    next_attempt_s: float | None  # seconds until the next attempt, while reconnecting


def result_text(result: types.CallToolResult) -> str:
    parts: list[str] = []
    for item in result.content:
        if isinstance(item, types.TextContent):
            parts.append(item.text)
        elif isinstance(item, types.EmbeddedResource) and isinstance(item.resource, types.TextResourceContents):
            parts.append(item.resource.text)
        elif isinstance(item, types.ResourceLink):
            parts.append(f"[resource link: {item.uri}]")
        else:
            parts.append(f"[{item.type} content omitted: {clean_text(getattr(item, 'mimeType', ''), 80)}]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False, sort_keys=True))
    text = "\n".join(parts)
    return text if len(text) <= RESULT_MAX_CHARS else text[:RESULT_MAX_CHARS]


class McpServer:
    def __init__(self, config: ServerConfig, *, timeout_s: float, max_sessions: int = 32,
                 connect_timeout_s: float = 20.0) -> None:
        self.config = config
        self.timeout_s = config.timeout_s or timeout_s
        self.max_sessions = max_sessions
        self.connect_timeout_s = connect_timeout_s
        self.tools: list[McpTool] = []
        self.last_error = ""
        self._sessions: OrderedDict[str, Connection] = OrderedDict()
        self._busy: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failures = 0
        self._retry_at = 0.0
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self.config.name

    def status(self) -> ServerStatus:
        up = bool(self.tools) and self._failures == 0
        sessions = sum(1 for c in self._sessions.values() if c.alive)
        connected = up and (sessions > 0 or not self.last_error)
        state = "reconnecting" if self._failures else "connected" if connected else "idle"
        wait = max(self._retry_at - time.monotonic(), 0.0) if self._failures else None
        return ServerStatus(name=self.name, transport=self.config.transport, up=up, tools=len(self.tools),
                            sessions=sessions, last_error=self.last_error, state=state,
                            next_attempt_s=round(wait, 1) if wait is not None else None)

    def backoff_s(self) -> float:
        return min(BACKOFF_MAX_S, BACKOFF_START_S * 2.0 ** max(self._failures - 1, 0))

    async def discover(self) -> list[McpTool]:
        """Connect once, list the tools, disconnect. Raises ServerUnavailable."""
        conn = Connection(self.config, connect_timeout_s=self.connect_timeout_s)
        try:
            await conn.open()
            async with asyncio.timeout(self.connect_timeout_s):
                specs = await conn.list_tools()
        except (ServerUnavailable, TimeoutError) as e:
            self._failed(str(e) or "listing tools timed out")
            raise ServerUnavailable(self.last_error) from None
        finally:  # closed in the background: a stdio server gets up to 2 s to exit, start-up need not wait
            self._closing.add(asyncio.create_task(conn.close()))
        self._failures, self.last_error = 0, ""
        tools: dict[str, McpTool] = {}
        for spec in specs:
            try:
                # The tool's overall cap also covers (re)connecting; the call itself gets self.timeout_s.
                t = build_tool(self.name, spec, read_only=spec.name in self.config.read_only,
                               timeout_s=self.timeout_s + self.connect_timeout_s, call=self.call)
            except ValueError as e:
                log.warning("MCP server %s: skipping a tool: %s", self.name, e)
                continue
            tools.setdefault(t.name, t)
        missing = sorted(self.config.read_only - {t.remote_name for t in tools.values()})
        if missing:
            log.warning("MCP server %s: read_only names tools the server does not offer: %s", self.name, missing)
        self.tools = [tools[n] for n in sorted(tools)]
        return self.tools

    def _failed(self, why: str) -> None:
        self._failures += 1
        self._retry_at = time.monotonic() + self.backoff_s()
        self.last_error = clean_text(why, 300)
        log.warning("MCP server %s is unavailable (%s); next attempt in %.1f s", self.name, self.last_error,
                    self.backoff_s())

    async def _session_for(self, user: str) -> Connection:
        lock = self._locks.setdefault(user, asyncio.Lock())
        async with lock:
            conn = self._sessions.get(user)
            if conn is not None and conn.alive:
                self._sessions.move_to_end(user)
                return conn
            if conn is not None:
                await conn.close()
                del self._sessions[user]
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise ToolError(f"MCP server {self.name} is unavailable ({self.last_error}); "
                                f"it will be tried again in {wait:.0f} s")
            conn = Connection(self.config, connect_timeout_s=self.connect_timeout_s)
            try:
                await conn.open()
            except ServerUnavailable as e:
                self._failed(str(e))
                raise ToolError(f"MCP server {self.name} is unavailable: {self.last_error}") from None
            self._failures, self.last_error = 0, ""
            self._sessions[user] = conn
            await self._evict_idle()
            return conn

    async def _evict_idle(self) -> None:
        while len(self._sessions) > self.max_sessions:
            idle = next((u for u in self._sessions if not self._busy.get(u)), None)
            if idle is None:
                return
            await self._sessions.pop(idle).close()

    async def call(self, ctx: ToolContext, tool: str, args: dict[str, Any]) -> str:
        conn = await self._session_for(ctx.user)
        self._busy[ctx.user] = self._busy.get(ctx.user, 0) + 1
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await conn.call(tool, args, timeout_s=self.timeout_s + 1)
        except TimeoutError:  # the session stays: a late answer to this request is dropped by the SDK
            raise ToolError(f"MCP server {self.name}: {tool} timed out after {self.timeout_s:g} s") from None
        except Exception as e:  # the transport failed under the call: drop the session; the next call reconnects
            if conn.alive and not isinstance(e, ServerUnavailable) and not _connection_lost(e):
                raise ToolError(f"MCP server {self.name}: {clean_text(str(e), 300)}") from None
            await conn.close()
            self.last_error = clean_text(f"went away during a call: {e}", 300)
            log.warning("MCP server %s %s (user %s)", self.name, self.last_error, ctx.user)
            raise ToolError(f"MCP server {self.name} went away during the call ({clean_text(str(e), 200)}). "
                            "The call may or may not have taken effect; the server is reconnected on the next "
                            "call.") from None
        finally:
            self._busy[ctx.user] -= 1
        text = result_text(result)
        if result.isError:
            raise ToolError(text or "the server reported an error")
        return text

    async def close(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for conn in sessions:
            await conn.close()
        for task in self._closing:
            with contextlib.suppress(BaseException):
                await task



def _connection_lost(e: Exception) -> bool:
    error = getattr(e, "error", None)
    return getattr(error, "code", None) == types.CONNECTION_CLOSED


class McpServers:
    """All configured servers. start() registers what is up; servers that are down are retried in the background
    and their tools handed to `on_late_tools` when they come up (the tools block changes once then)."""

    def __init__(self, configs: list[ServerConfig], *, timeout_s: float, connect_timeout_s: float = 20.0,
                 config_error: str = "") -> None:
        self.config_error = config_error  # the config file could not be used: no servers, this says why
        self.servers = [McpServer(c, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)
                        for c in sorted(configs, key=lambda c: c.name)]
        self._retries: list[asyncio.Task[None]] = []

    async def start(self, on_late_tools: Callable[[list[Tool]], None]) -> list[Tool]:
        found = await asyncio.gather(*(self._first(s) for s in self.servers))
        for server, tools in zip(self.servers, found, strict=True):
            if tools is None:
                self._retries.append(asyncio.create_task(self._retry(server, on_late_tools),
                                                         name=f"mcp-retry:{server.name}"))
        return [t for tools in found if tools for t in tools]

    @staticmethod
    async def _first(server: McpServer) -> list[McpTool] | None:
        try:
            tools = await server.discover()
        except ServerUnavailable:
            return None
        log.info("MCP server %s (%s): %d tools", server.name, server.config.transport, len(tools))
        return tools

    @staticmethod
    async def _retry(server: McpServer, on_late_tools: Callable[[list[Tool]], None]) -> None:
        while True:
            await asyncio.sleep(server.backoff_s())
            try:
                tools = await server.discover()
            except ServerUnavailable:
                continue
            log.info("MCP server %s is up: registering %d tools", server.name, len(tools))
            on_late_tools(list(tools))
            return

    def status(self) -> list[ServerStatus]:
        return [s.status() for s in self.servers]

    async def close(self) -> None:
        for task in self._retries:
            task.cancel()
        for task in self._retries:
            with contextlib.suppress(BaseException):
                await task
        for server in self.servers:
            await server.close()
