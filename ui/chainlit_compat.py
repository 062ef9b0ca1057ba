"""The one module that touches chainlit internals (anything beyond its documented API); each function names
the internal it relies on, and tests/test_chainlit_compat.py fails loudly if an upgrade moves it.

Why `drop_constructor_sleep` is safe: `cl.Message` and `cl.Step` constructors call a blocking
`time.sleep(0.001)` (chainlit 2.x; added so that steps made in a row get distinct `createdAt` for data layers
that order by it). On the event loop that is ~1-2 ms of every session frozen per constructor, six per tool turn
(bench/concurrency_server.py). Our data layer orders a thread's steps by their write order (store/steps.py,
`seq`), never by `createdAt`, and the browser keeps the order it receives, so the pause buys nothing here.
"""

from __future__ import annotations

import importlib
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any


class _TimeWithoutSleep(types.SimpleNamespace):
    """The `time` module as those two chainlit modules see it: everything but `sleep` passes through."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None


def drop_constructor_sleep() -> None:
    """`cl.Message` and `cl.Step` no longer sleep 1 ms on the event loop (see the module docstring).

    Relies on chainlit 2.12 calling `time.sleep` through the module globals of `chainlit.message` and
    `chainlit.step`; tests/test_chainlit_compat.py fails loudly if they sleep again."""
    # By module path: the package attribute `chainlit.step` is the @step decorator, not the module.
    for name in ("chainlit.message", "chainlit.step"):
        setattr(importlib.import_module(name), "time", _TimeWithoutSleep())  # noqa: B010 (a module global, by name)


async def disconnect_sockets_of(user: str, issued_before: Callable[[str | None], bool] | None = None) -> int:
    """Close every open chat socket of `user`: after logout, a socket opened earlier with a copied cookie
    must not keep chatting (the handshake checks revocation; a live socket is never asked again).
    `issued_before(token)`: close only the sockets whose login token it accepts (default: every one).

    The one place that reads chainlit's socket registry (`chainlit.session.ws_sessions_sid`, 2.12);
    tests/test_chainlit_compat.py fails loudly if an upgrade moves it."""
    from chainlit.server import sio
    from chainlit.session import ws_sessions_sid

    sids = [sid for sid, session in list(ws_sessions_sid.items())
            if session.user is not None and session.user.identifier == user
            and (issued_before is None or issued_before(session.token))]
    for sid in sids:
        await sio.disconnect(sid)
    return len(sids)


UPLOAD_PATH = "/project/file"  # chainlit 2.12 serves uploads at POST here (chainlit/server.py)


def set_allowed_origins(origins: list[str]) -> None:
    """Chainlit's CORS list (its `allow_origins` setting) is `origins`, set before chainlit builds its app.

    Relies on chainlit 2.12 reading `config.project.allow_origins` once, when `chainlit.server` is imported
    (its CORSMiddleware); tests/test_chainlit_compat.py fails loudly if not. Raises if that import already
    happened: the setting would be ignored and chainlit would answer CORS for any origin."""
    import sys

    from chainlit.config import config

    if "chainlit.server" in sys.modules:
        raise RuntimeError("chainlit.server was imported before Tollgate set its allowed origins")
    config.project.allow_origins = list(origins)


def serve_index_through(transform: Callable[[str], str]) -> Callable[[str], str]:
    """Chainlit's index page (every SPA path) is `transform(html)`; returns the wrapped template function.

    Relies on chainlit 2.12 building the page with the module function `chainlit.server.get_html_template(
    root_path)`, looked up at each request by its catch-all route; tests/test_chainlit_compat.py fails loudly
    if not. Idempotent (a second call does not wrap twice)."""
    import chainlit.server as server

    original: Callable[[str], str] = server.get_html_template
    if getattr(original, "_tollgate_wrapped", False):
        return original

    def get_html_template(root_path: str) -> str:
        return transform(original(root_path))

    get_html_template._tollgate_wrapped = True  # type: ignore[attr-defined]
    server.get_html_template = get_html_template
    return get_html_template


def before_client_message(note: Callable[[Any, Any], None]) -> None:
    """Call `note(session, payload)` on every step a client sends (chat box, answers to AskUserMessage),
    before chainlit schedules its persistence.

    Relies on chainlit 2.12 routing them all through `chainlit.emitter.ChainlitEmitter.process_message(self,
    payload)` with the emitter's session at `self.session`; tests/test_chainlit_compat.py fails loudly if not."""
    from chainlit.emitter import ChainlitEmitter

    original = ChainlitEmitter.process_message

    async def process_message(self: ChainlitEmitter, payload: Any) -> Any:
        note(self.session, payload)
        return await original(self, payload)

    ChainlitEmitter.process_message = process_message  # type: ignore[method-assign]


def before_socket_event(event: str, check: Callable[[str, Any], bool]) -> None:
    """Run `check(sid, payload)` before chainlit's handler of the socket `event`; when it returns False the
    event is dropped (the handler returns None, as chainlit's do).

    Relies on chainlit 2.12 registering its handlers in python-socketio's registry
    `chainlit.server.sio.handlers["/"][event]`; tests/test_chainlit_compat.py fails loudly if not."""
    from chainlit.server import sio

    handlers = sio.handlers["/"]
    original = handlers[event]

    async def guarded(sid: str, payload: Any) -> Any:
        if not check(sid, payload):
            return None
        return await original(sid, payload)

    handlers[event] = guarded


def session_of_socket(sid: str) -> Any:
    """The chainlit session of socket `sid` (raises if there is none).

    Relies on chainlit 2.12 `chainlit.session.WebsocketSession.require(sid)`; tests/test_chainlit_compat.py
    fails loudly if it moves."""
    from chainlit.session import WebsocketSession

    return WebsocketSession.require(sid)


def after_resumed_history(send: Callable[[], Awaitable[None]]) -> None:
    """Run `send` right after chainlit sends a resumed thread's stored history to this session's browser,
    which replaces the message list (anything sent before it would be wiped). Call inside @cl.on_chat_resume.

    Relies on chainlit 2.12 calling `context.emitter.resume_thread(thread)` after the on_chat_resume handler
    returns (chainlit/socket.py); tests/test_chainlit_compat.py fails loudly if that changes."""
    from chainlit.context import context

    emitter = context.emitter
    send_history = emitter.resume_thread

    async def history_then(thread_dict: Any) -> None:
        await send_history(thread_dict)
        await send()

    emitter.resume_thread = history_then  # type: ignore[method-assign]


def resume_thread_asked_on_a_restored_session() -> None:
    """A socket that reconnects an untouched session and names a thread resumes that thread.

    The thread page connects once when the config loads and again, same session id, once it knows the thread
    id. When the thread-less socket reaches the server first, chainlit 2.12 restores that session on the
    second connect and ignores its `threadId`: `connection_successful` runs on_chat_start for a restored
    session and never resumes (chainlit/socket.py), so the page waits forever. Chainlit has already refused
    the connect when the thread is another user's. Relies on the handler `sio.handlers["/"]["connect"]` and
    the session fields `restored`, `has_first_interaction`, `thread_id_to_resume`; tests/test_chainlit_compat.py
    fails loudly if they move."""
    from chainlit.server import sio
    from chainlit.session import WebsocketSession

    handlers = sio.handlers["/"]
    original = handlers["connect"]

    async def connect(sid: str, environ: Any, auth: Any) -> Any:
        accepted = await original(sid, environ, auth)
        thread_id = auth.get("threadId") if isinstance(auth, dict) else None
        session = WebsocketSession.get(sid) if accepted and thread_id else None
        if session is not None and session.restored and not session.has_first_interaction:
            session.thread_id_to_resume = session.thread_id = str(thread_id)
            session.restored = False  # nothing happened in it: resume as a fresh session would
        return accepted

    handlers["connect"] = connect
