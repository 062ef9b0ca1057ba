"""Full-text search over the text the chat showed (SQLite FTS5), kept in step by triggers.

Only `text` blocks are indexed (what the user and the model wrote), not tool inputs or outputs. The
index is a plain FTS5 table keyed by the message's rowid (made by the baseline migration,
store/migrations/versions/0001_baseline.py); triggers on `messages` keep it current, so every write path
(append, a streaming answer updated in place, a cascade delete) is covered without the store having to
remember it. On PostgreSQL: its own text search, a GIN index on to_tsvector('simple', message_text(content_json))
(migration 0003), queried with the same expression.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, column, func, literal_column, select, table

from store.models import MESSAGES, THREADS


def fts_query(search: str) -> str | None:
    """The user's words as an FTS5 query: every word must occur, the last one as a prefix (search as
    you type). Each word is a quoted string, so FTS5 operators and punctuation typed by the user are
    only text. None when nothing searchable is left."""
    words = [w for w in re.split(r"\s+", search.strip()) if w]
    if not words:
        return None
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += " *"
    return " AND ".join(quoted)


def ts_query(search: str) -> str | None:
    """The user's words as a PostgreSQL tsquery: every word (each a quoted lexeme, so `&`, `|`, `!` and
    quotes typed by the user are only text), the last as a prefix. None when nothing searchable is left."""
    words = [w for w in re.split(r"\s+", search.strip()) if w]
    if not words:
        return None
    quoted = ["'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in words]
    quoted[-1] += ":*"
    return " & ".join(quoted)


# The indexed expression of migration 0003: the query must repeat it exactly for the GIN index to be used.
_PG_DOCUMENT = func.to_tsvector(literal_column("'simple'::regconfig"), func.message_text(MESSAGES.c.content_json))


def thread_matches(search: str, *, owner_id: Any, sqlite: bool) -> ColumnElement[bool]:
    """A condition on `threads`: the title or a message of the thread contains the words."""
    own = select(THREADS.c.id).where(THREADS.c.owner_id == owner_id)  # never match in others' threads
    title_hit = func.lower(THREADS.c.title).contains(search.lower(), autoescape=True)
    query = fts_query(search)
    if query is None:
        return title_hit
    if not sqlite:
        tsquery = func.to_tsquery(literal_column("'simple'::regconfig"), ts_query(search))
        hits = select(MESSAGES.c.thread_id).where(MESSAGES.c.thread_id.in_(own), _PG_DOCUMENT.op("@@")(tsquery))
        return title_hit | THREADS.c.id.in_(hits)
    index = table("message_search", column("thread_id"))
    fts_hits = select(index.c.thread_id).where(literal_column("message_search").op("MATCH")(query),
                                               index.c.thread_id.in_(own))
    return title_hit | THREADS.c.id.in_(fts_hits)
