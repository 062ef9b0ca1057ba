"""PostgreSQL full-text search over the text blocks of messages: an expression GIN index on
to_tsvector('simple', message_text(content_json)); SQLite keeps its FTS5 index (0001). No triggers: the index
follows every insert, update and delete of `messages` by itself.

Revision ID: 0003_postgres_search
Revises: 0002_money_bigint
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_postgres_search"
down_revision: str | None = "0002_money_bigint"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # The text a message showed: its `text` blocks joined by spaces (tool inputs and outputs are not searched).
    op.execute("""
        CREATE FUNCTION message_text(content_json text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT coalesce(string_agg(b.value ->> 'text', ' '), '')
            FROM jsonb_array_elements(CASE WHEN jsonb_typeof(content_json::jsonb) = 'array'
                                           THEN content_json::jsonb ELSE '[]'::jsonb END) AS b
            WHERE b.value ->> 'type' = 'text'
        $$""")
    op.execute("CREATE INDEX ix_messages_search ON messages "
               "USING gin (to_tsvector('simple'::regconfig, message_text(content_json)))")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_messages_search")
    op.execute("DROP FUNCTION message_text(text)")
