"""The chat's history of an answer still streaming, cut or stopped: the agent writes it here (agent/partial.py
`AnswerHistory`) whatever renders the stream, so a page opened after a crash or a stop shows what had arrived
(marked cut until the complete answer replaces it). The renderer only renders."""

from __future__ import annotations

from datetime import UTC, datetime

from chainlit.config import config

from store import steps as step_store
from store.db import Database
from ui.placement import parent_id
from ui.safe_markdown import sanitize

INCOMPLETE_MARK = "\n\n*(incomplete: the answer was cut off here)*"


class ChatHistory:
    """The answer as the history's assistant message: the same id, author and place as the message the renderer
    streams (TextDelta.answer_id), sanitised like everything the browser shows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def keep(self, *, owner: str, thread_id: str, answer_id: str, text: str, complete: bool,
                   started_at: float) -> None:
        created = datetime.fromtimestamp(started_at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        values = {"name": config.ui.name, "type": "assistant_message", "parent_id": parent_id(),
                  "output": sanitize(text) + ("" if complete else INCOMPLETE_MARK), "is_error": False,
                  "created_at": created, "metadata_json": "{}"}
        await step_store.upsert_step(self._db, owner=owner, thread_id=thread_id, step_id=answer_id, values=values,
                                     at=started_at)
