"""The chat's event handlers (Chainlit decorators) wired to the agent. Loaded by ui/web.py, which mounts
Chainlit inside Tollgate's own app: serve with `tollgate serve` (`make run`), not `chainlit run app.py`."""

from __future__ import annotations

from typing import Any

from ui import web

if not web.building():  # `chainlit run app.py` would serve the chat without the guards ui/web.py puts around it
    raise SystemExit("app.py is loaded by Tollgate's server: run `tollgate serve` (make run), not `chainlit run`")

import chainlit as cl
from chainlit.mcp import McpConnection
from chainlit.types import ThreadDict
from fastapi import Request, Response
from mcp import ClientSession

from ui import chat, user_mcp
from ui.datalayer import StoreDataLayer
from ui.render import APPROVE, APPROVE_ALWAYS, CONTINUE, REJECT, REJECT_WHY, RETRY, STOP_ALWAYS
from ui.sessions import token_from


@cl.password_auth_callback
async def login(username: str, password: str) -> cl.User | None:
    return await chat.authenticate(username, password)


@cl.on_logout
async def logout(request: Request, _response: Response) -> dict[str, bool]:
    await chat.logout(token_from(request.cookies, request.headers.get("authorization")))
    return {"success": True}


@cl.set_starters
async def starters(_user: cl.User | None = None, _language: str | None = None) -> list[cl.Starter]:
    return [cl.Starter(label=label, message=message) for label, message in chat.STARTERS]


@cl.data_layer
def data_layer() -> StoreDataLayer:
    return StoreDataLayer(chat.runtime)


@cl.on_chat_start
async def on_chat_start() -> None:
    await chat.on_chat_start()  # the settings panel: model and effort for new threads, budget left


@cl.on_settings_update
async def on_settings_update(settings: dict[str, Any]) -> None:
    await chat.on_settings_update(settings)


@cl.on_chat_resume
async def on_resume(thread: ThreadDict) -> None:
    await chat.on_resume(dict(thread))


@cl.on_message
async def on_message(message: cl.Message) -> None:
    await chat.on_message(message)


@cl.action_callback(APPROVE)
async def approve(action: cl.Action) -> None:
    await chat.on_decision(action, "approved")


@cl.action_callback(REJECT)
async def reject(action: cl.Action) -> None:
    await chat.on_decision(action, "rejected")


@cl.action_callback(REJECT_WHY)
async def reject_with_reason(action: cl.Action) -> None:
    await chat.on_reject_with_reason(action)


@cl.action_callback(APPROVE_ALWAYS)
async def approve_always(action: cl.Action) -> None:
    await chat.on_approve_always(action)


@cl.action_callback(STOP_ALWAYS)
async def stop_always(action: cl.Action) -> None:
    await chat.on_stop_always(action)


@cl.action_callback(RETRY)
async def retry(action: cl.Action) -> None:
    await chat.on_retry(action)


@cl.action_callback(CONTINUE)
async def continue_cut(action: cl.Action) -> None:
    await chat.on_continue(action)


@cl.on_mcp_connect
async def mcp_connect(connection: McpConnection, session: ClientSession) -> None:
    await user_mcp.on_connect(connection, session)  # only when TOLLGATE_USER_MCP=on; HTTP only; this user alone


@cl.on_mcp_disconnect
async def mcp_disconnect(name: str, session: ClientSession) -> None:
    await user_mcp.on_disconnect(name, session)
