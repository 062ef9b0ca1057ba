"""One live MCP client session (stdio process or Streamable HTTP), owned by a task of its own.

The SDK's transports are anyio context managers that must be entered and left in the same task, so each
Connection runs one task that opens the transport and the ClientSession, signals ready, and holds them
until closed or until the server goes away. Calls from any task go through the session's streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tools.mcp.config import ServerConfig

log = logging.getLogger("tollgate.mcp")
_MAX_TOOL_PAGES = 20


class ServerUnavailable(Exception):
    """The server could not be reached or went away; the message says what happened."""


class Connection:
    def __init__(self, config: ServerConfig, *, connect_timeout_s: float = 20.0) -> None:
        self.config = config
        self.connect_timeout_s = connect_timeout_s
        self._session: ClientSession | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    @property
    def alive(self) -> bool:
        return self._session is not None and self._task is not None and not self._task.done()

    @property
    def client(self) -> ClientSession:
        """The live MCP client session (raises ServerUnavailable when not connected)."""
        return self._require()

    async def open(self) -> None:
        self._task = asyncio.create_task(self._hold(), name=f"mcp:{self.config.name}")
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await self._ready.wait()
        except TimeoutError:
            await self.close()
            raise ServerUnavailable(f"no answer within {self.connect_timeout_s:g} s") from None
        if self._session is None:
            err = self._error
            await self.close()
            raise ServerUnavailable(_describe(err)) from None

    async def _hold(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                cfg = self.config
                if cfg.url is not None:
                    client = await stack.enter_async_context(create_mcp_http_client(headers=dict(cfg.headers)))
                    read, write, _ = await stack.enter_async_context(streamable_http_client(cfg.url,
                                                                                            http_client=client))
                else:
                    env = get_default_environment() | {"PYTHONUNBUFFERED": "1"} | dict(cfg.env)
                    if "PATH" not in env and "PATH" in os.environ:
                        env["PATH"] = os.environ["PATH"]
                    params = StdioServerParameters(command=cfg.command[0], args=list(cfg.command[1:]), env=env,
                                                   cwd=cfg.cwd)
                    read, write = await stack.enter_async_context(stdio_client(params))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self._session = session
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:  # any failure of the transport is "unavailable", and reported
            self._error = e
            if not isinstance(e, asyncio.CancelledError | GeneratorExit):
                log.warning("MCP server %s: connection ended: %s", self.config.name, _describe(e))
        finally:
            self._session = None
            self._ready.set()

    async def list_tools(self) -> list[types.Tool]:
        session = self._require()
        found: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_MAX_TOOL_PAGES):
            page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
            found += page.tools
            cursor = page.nextCursor
            if not cursor:
                break
        return found

    async def call(self, tool: str, args: dict[str, Any], *, timeout_s: float) -> types.CallToolResult:
        session = self._require()
        assert self._task is not None
        # Raced against the connection's own task: a dead HTTP transport can leave a request unanswered forever.
        call = asyncio.ensure_future(session.call_tool(tool, args, read_timeout_seconds=timedelta(seconds=timeout_s)))
        try:
            await asyncio.wait({call, self._task}, return_when=asyncio.FIRST_COMPLETED)
            if call.done():
                return call.result()
            raise ServerUnavailable(f"the connection ended during the call ({_describe(self._error)})")
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call

    def _require(self) -> ClientSession:
        if self._session is None or not self.alive:
            raise ServerUnavailable("not connected")
        return self._session

    async def close(self) -> None:
        self._stop.set()
        task = self._task
        if task is None or task.done():
            return
        try:
            async with asyncio.timeout(5.0):
                await asyncio.shield(task)
        except (TimeoutError, Exception):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _describe(err: BaseException | None) -> str:
    """The innermost useful message of a (possibly grouped) transport failure."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    if err is None:
        return "the connection closed"
    text = str(err).strip() or type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"
