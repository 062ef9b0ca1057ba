"""Chainlit entry point: wires chat events to the agent. Run with `make run`."""

from __future__ import annotations

import logging
from typing import Any

from agent.config import Settings
from ui.setup import ensure_auth_secret, restrict_origins, tune_gc_after_startup

ensure_auth_secret(Settings().data_dir)  # before chainlit checks for the secret

import chainlit as cl  # noqa: E402
from chainlit.config import config as chainlit_config  # noqa: E402
from chainlit.server import app as chainlit_app  # noqa: E402
from chainlit.types import ThreadDict  # noqa: E402
from fastapi import Request, Response  # noqa: E402

from ui import chat, client_steps, loop_monitor, operator, operator_page, security_headers  # noqa: E402
from ui.chainlit_compat import drop_constructor_sleep, resume_thread_asked_on_a_restored_session  # noqa: E402
from ui.datalayer import StoreDataLayer  # noqa: E402
from ui.doors import guard_doors  # noqa: E402
from ui.render import APPROVE, APPROVE_ALWAYS, CONTINUE, REJECT, REJECT_WHY, RETRY, STOP_ALWAYS  # noqa: E402
from ui.sessions import token_from  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
restrict_origins(chainlit_config.project.allow_origins)
drop_constructor_sleep()
operator.install(chainlit_app)
guard_doors(chainlit_app)
security_headers.install(chainlit_app, extra_inline_scripts=operator_page.INLINE_SCRIPTS)  # CSP on every response
client_steps.install(chainlit_app)  # steps a client writes are bounded like user messages (ui/datalayer.py)
resume_thread_asked_on_a_restored_session()  # a thread URL opened on a loaded machine resumes (ui/chainlit_compat)


@cl.on_app_startup
async def startup() -> None:
    loop_monitor.start()  # measures event-loop stalls when TOLLGATE_LOOP_LAG_FILE is set (bench/)
    await chat.runtime()
    tune_gc_after_startup()


@cl.on_app_shutdown
async def shutdown() -> None:
    await chat.shutdown()


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
