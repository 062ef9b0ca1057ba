"""Context summaries: what the model sees instead of a long thread's middle (see agent/compress.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import insert, select

from store.db import Database
from store.models import CONTEXT_SUMMARIES

_summaries = CONTEXT_SUMMARIES


@dataclass(frozen=True)
class StoredSummary:
    covers_to_seq: int
    messages: int
    text: str
    tokens: int
    model: str
    created_at: float


async def latest(db: Database, *, thread_id: str) -> StoredSummary | None:
    """The summary in use: the one covering the most messages (later ones always cover more)."""
    stmt = (select(_summaries.c.covers_to_seq, _summaries.c.messages, _summaries.c.text, _summaries.c.tokens,
                   _summaries.c.model, _summaries.c.created_at)
            .where(_summaries.c.thread_id == thread_id)
            .order_by(_summaries.c.covers_to_seq.desc(), _summaries.c.id.desc()).limit(1))
    row = await db.query(lambda conn: conn.execute(stmt).first())
    if row is None:
        return None
    return StoredSummary(covers_to_seq=row.covers_to_seq, messages=row.messages, text=row.text, tokens=row.tokens,
                         model=row.model, created_at=row.created_at)


async def save(db: Database, *, thread_id: str, covers_to_seq: int, messages: int, text: str, tokens: int,
               model: str) -> StoredSummary:
    """Keep every summary (an audit of what the model was shown); callers are thread-scoped already."""
    now = time.time()
    stmt = insert(_summaries).values(thread_id=thread_id, covers_to_seq=covers_to_seq, messages=messages, text=text,
                                     tokens=tokens, model=model, created_at=now)
    await db.transact(lambda conn: conn.execute(stmt))
    return StoredSummary(covers_to_seq=covers_to_seq, messages=messages, text=text, tokens=tokens, model=model,
                         created_at=now)
