"""Which steps a socket client wrote. A client picks its step's type, name and metadata, so the type cannot
say whose text a step holds; the id can: every step a client sends enters through the emitter's
`process_message` (the chat box, answers to AskUserMessage) or the `edit_message` event, and we note its id
there, before chainlit persists it. The data layer bounds those steps by the user-message limit.

Uploads: the app reads none, and chainlit reads a whole upload into memory before checking that uploads are
on, so `/project/file` is refused here before its body is read."""

from __future__ import annotations

import logging
import weakref
from typing import Any

from chainlit.config import config
from chainlit.context import context
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ui import chainlit_compat

log = logging.getLogger("tollgate.history")
_ids: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()  # per websocket session


def _note(session: Any, payload: Any) -> None:
    message = payload.get("message") if isinstance(payload, dict) else None
    if isinstance(message, dict) and isinstance(message.get("id"), str):
        _ids.setdefault(session, set()).add(message["id"])


def from_client(step_id: str) -> bool:
    """Inside a chainlit context: did this session's client send the step with this id?"""
    try:
        session = context.session
    except Exception:  # no chainlit context
        return False
    return step_id in _ids.get(session, ())


async def _uploads_off() -> JSONResponse:
    return JSONResponse({"detail": "file uploads are off"}, status_code=403)


def _edit_allowed(sid: str, payload: Any) -> bool:
    # Off in .chainlit/config.toml, yet chainlit's handler does not check: honour the setting.
    if not config.features.edit_message:
        log.warning("refused an edit_message event: editing is off")
        return False
    _note(chainlit_compat.session_of_socket(sid), payload)
    return True


def install(app: FastAPI) -> None:
    """Call before chainlit is mounted on `app`: the upload route then answers ahead of chainlit's."""
    if not config.features.spontaneous_file_upload or not config.features.spontaneous_file_upload.enabled:
        app.add_api_route(chainlit_compat.UPLOAD_PATH, _uploads_off, methods=["POST"])
    chainlit_compat.before_client_message(_note)  # before chainlit schedules the step's persistence
    chainlit_compat.before_socket_event("edit_message", _edit_allowed)
