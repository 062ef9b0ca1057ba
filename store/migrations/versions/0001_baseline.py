"""Baseline: the schema `create_all` made before migrations (store/models.py, store/door_tables.py), plus
SQLite's full-text index (store/search.py at that time). Frozen: later changes are later revisions.

A database made by that `create_all` (no alembic_version table) is checked against this revision's tables
and stamped with it (store/schema.py), so its rows stay where they are.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001_baseline'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_tables()
    if op.get_bind().dialect.name == "sqlite":
        create_sqlite_search(op.get_bind())


def create_tables() -> None:
    op.create_table('login_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account', sa.String(), nullable=False),
    sa.Column('address', sa.String(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_login_failures_account_at', 'login_failures', ['account', 'at'], unique=False)
    op.create_index('ix_login_failures_address_at', 'login_failures', ['address', 'at'], unique=False)
    op.create_index(op.f('ix_login_failures_at'), 'login_failures', ['at'], unique=False)

    op.create_table('purges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('by', sa.String(), nullable=False),
    sa.Column('older_than_days', sa.Float(), nullable=False),
    sa.Column('threads', sa.Integer(), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('approvals', sa.Integer(), nullable=False),
    sa.Column('tool_calls', sa.Integer(), nullable=False),
    sa.Column('model_calls_detached', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('session_cutoffs',
    sa.Column('user_name', sa.String(), nullable=False),
    sa.Column('revoked_before', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('user_name')
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('password_hash', sa.String(), nullable=False),
    sa.Column('role', sa.String(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_users_name'), 'users', ['name'], unique=True)

    op.create_table('budgets',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('daily_nanousd', sa.Integer(), nullable=True),
    sa.Column('monthly_nanousd', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_table('estimate_margins',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('overruns', sa.Integer(), nullable=False),
    sa.Column('overrun_nanousd', sa.Integer(), nullable=False),
    sa.Column('factor_milli', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_table('model_calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('thread_id', sa.String(), nullable=True),
    sa.Column('turn_id', sa.String(), nullable=False),
    sa.Column('model', sa.String(), nullable=False),
    sa.Column('purpose', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('reserved_nanousd', sa.Integer(), nullable=False),
    sa.Column('cost_nanousd', sa.Integer(), nullable=False),
    sa.Column('reserved_tokens', sa.Integer(), nullable=False),
    sa.Column('input_tokens', sa.Integer(), nullable=False),
    sa.Column('output_tokens', sa.Integer(), nullable=False),
    sa.Column('cache_write_5m_tokens', sa.Integer(), nullable=False),
    sa.Column('cache_write_1h_tokens', sa.Integer(), nullable=False),
    sa.Column('cache_read_tokens', sa.Integer(), nullable=False),
    sa.Column('stop_reason', sa.String(), nullable=True),
    sa.Column('ttft_ms', sa.Float(), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('error', sa.String(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('day', sa.String(), nullable=False),
    sa.Column('month', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_index('ix_model_calls_day', 'model_calls', ['day'], unique=False)
    op.create_index('ix_model_calls_thread', 'model_calls', ['thread_id'], unique=False)
    op.create_index('ix_model_calls_turn', 'model_calls', ['turn_id'], unique=False)
    op.create_index('ix_model_calls_user_day', 'model_calls', ['user_id', 'day'], unique=False)

    op.create_table('threads',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_threads_owner_updated', 'threads', ['owner_id', 'updated_at'], unique=False)

    op.create_table('always_approve',
    sa.Column('thread_id', sa.String(), nullable=False),
    sa.Column('tool', sa.String(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('thread_id', 'tool')
    )
    op.create_table('approvals',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('thread_id', sa.String(), nullable=False),
    sa.Column('tool_use_id', sa.String(), nullable=False),
    sa.Column('tool', sa.String(), nullable=False),
    sa.Column('args_json', sa.Text(), nullable=False),
    sa.Column('args_digest', sa.String(), nullable=False),
    sa.Column('risk', sa.String(), nullable=False),
    sa.Column('untrusted_sources_json', sa.String(), nullable=False),
    sa.Column('route', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('requested_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('decided_at', sa.Float(), nullable=True),
    sa.Column('decided_by', sa.String(), nullable=True),
    sa.Column('decided_via', sa.String(), nullable=True),
    sa.Column('reason', sa.String(), nullable=True),
    sa.Column('executed_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('thread_id', 'tool_use_id')
    )
    op.create_index('ix_approvals_thread_status', 'approvals', ['thread_id', 'status'], unique=False)

    op.create_table('context_summaries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('thread_id', sa.String(), nullable=False),
    sa.Column('covers_to_seq', sa.Integer(), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('tokens', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_context_summaries_thread', 'context_summaries', ['thread_id', 'covers_to_seq'], unique=False)

    op.create_table('messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('thread_id', sa.String(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(), nullable=False),
    sa.Column('content_json', sa.Text(), nullable=False),
    sa.Column('incomplete', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('thread_id', 'seq')
    )
    op.create_table('thread_deletions',
    sa.Column('thread_id', sa.String(), nullable=False),
    sa.Column('deleted_at', sa.Float(), nullable=False),
    sa.Column('deleted_by', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('thread_id')
    )
    op.create_index(op.f('ix_thread_deletions_deleted_at'), 'thread_deletions', ['deleted_at'], unique=False)

    op.create_table('tool_calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('thread_id', sa.String(), nullable=False),
    sa.Column('tool_use_id', sa.String(), nullable=False),
    sa.Column('tool', sa.String(), nullable=False),
    sa.Column('args_json', sa.Text(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('output', sa.Text(), nullable=False),
    sa.Column('is_error', sa.Boolean(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('thread_id', 'tool_use_id')
    )
    op.create_index(op.f('ix_tool_calls_thread_id'), 'tool_calls', ['thread_id'], unique=False)

    op.create_table('ui_steps',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('thread_id', sa.String(), nullable=False),
    sa.Column('seq', sa.Float(), nullable=False),
    sa.Column('parent_id', sa.String(), nullable=True),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('input', sa.Text(), nullable=False),
    sa.Column('output', sa.Text(), nullable=False),
    sa.Column('is_error', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.String(), nullable=True),
    sa.Column('start', sa.String(), nullable=True),
    sa.Column('end', sa.String(), nullable=True),
    sa.Column('show_input', sa.String(), nullable=True),
    sa.Column('language', sa.String(), nullable=True),
    sa.Column('metadata_json', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_ui_steps_thread_seq', 'ui_steps', ['thread_id', 'seq'], unique=False)


# SQLite FTS5 over the text blocks of messages, kept in step by triggers (a copy of store/search.py's DDL).
SQLITE_SEARCH_DDL = [
    "CREATE VIEW IF NOT EXISTS message_text AS SELECT m.id AS id, m.thread_id AS thread_id, "
    "(SELECT coalesce(group_concat(json_extract(b.value, '$.text'), ' '), '') FROM json_each(m.content_json) AS b "
    "WHERE json_extract(b.value, '$.type') = 'text') AS text FROM messages AS m",
    "CREATE VIRTUAL TABLE IF NOT EXISTS message_search USING fts5("
    "text, thread_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS message_search_ai AFTER INSERT ON messages BEGIN "
    "INSERT INTO message_search(rowid, text, thread_id) SELECT id, text, thread_id FROM message_text "
    "WHERE id = new.id; END",
    "CREATE TRIGGER IF NOT EXISTS message_search_au AFTER UPDATE OF content_json ON messages BEGIN "
    "DELETE FROM message_search WHERE rowid = old.id; "
    "INSERT INTO message_search(rowid, text, thread_id) SELECT id, text, thread_id FROM message_text "
    "WHERE id = new.id; END",
    "CREATE TRIGGER IF NOT EXISTS message_search_ad AFTER DELETE ON messages BEGIN "
    "DELETE FROM message_search WHERE rowid = old.id; END",
]


def create_sqlite_search(conn: sa.Connection) -> None:
    """The index and its triggers; a database made before the index existed gets what it holds indexed once."""
    existed = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'message_search'").first() is not None
    for statement in SQLITE_SEARCH_DDL:
        conn.exec_driver_sql(statement)
    if not existed:
        conn.exec_driver_sql(
            "INSERT INTO message_search(rowid, text, thread_id) SELECT id, text, thread_id FROM message_text")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("message_search_ai", "message_search_au", "message_search_ad"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS message_search")
        op.execute("DROP VIEW IF EXISTS message_text")
    # Every table, children first (indexes go with their tables).
    op.drop_table('ui_steps')
    op.drop_table('tool_calls')
    op.drop_table('thread_deletions')
    op.drop_table('messages')
    op.drop_table('context_summaries')
    op.drop_table('approvals')
    op.drop_table('always_approve')
    op.drop_table('threads')
    op.drop_table('model_calls')
    op.drop_table('estimate_margins')
    op.drop_table('budgets')
    op.drop_table('users')
    op.drop_table('session_cutoffs')
    op.drop_table('purges')
    op.drop_table('login_failures')
