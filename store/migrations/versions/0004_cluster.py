"""Several app processes on one database: process registry, thread leases, thread watchers, due resumes
(store/cluster_tables.py). New tables only; nothing existing changes.

Revision ID: 0004_cluster
Revises: 0003_postgres_search
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004_cluster'
down_revision: str | None = '0003_postgres_search'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('app_processes',
                    sa.Column('id', sa.String(), nullable=False),
                    sa.Column('host', sa.String(), nullable=False),
                    sa.Column('pid', sa.Integer(), nullable=False),
                    sa.Column('started_at', sa.Float(), nullable=False),
                    sa.Column('heartbeat_at', sa.Float(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index(op.f('ix_app_processes_heartbeat_at'), 'app_processes', ['heartbeat_at'], unique=False)
    op.create_table('thread_leases',
                    sa.Column('thread_id', sa.String(), nullable=False),
                    sa.Column('holder', sa.String(), nullable=True),
                    sa.Column('epoch', sa.Integer(), nullable=False),
                    sa.Column('acquired_at', sa.Float(), nullable=False),
                    sa.PrimaryKeyConstraint('thread_id'))
    op.create_table('thread_watchers',
                    sa.Column('thread_id', sa.String(), nullable=False),
                    sa.Column('process_id', sa.String(), nullable=False),
                    sa.Column('at', sa.Float(), nullable=False),
                    sa.PrimaryKeyConstraint('thread_id'))
    op.create_index(op.f('ix_thread_watchers_process_id'), 'thread_watchers', ['process_id'], unique=False)
    op.create_table('due_resumes',
                    sa.Column('thread_id', sa.String(), nullable=False),
                    sa.Column('owner', sa.String(), nullable=False),
                    sa.Column('due_at', sa.Float(), nullable=False),
                    sa.Column('version', sa.Integer(), nullable=False),
                    sa.Column('claimed_by', sa.String(), nullable=True),
                    sa.Column('claimed_until', sa.Float(), nullable=False),
                    sa.PrimaryKeyConstraint('thread_id'))
    op.create_index(op.f('ix_due_resumes_due_at'), 'due_resumes', ['due_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_due_resumes_due_at'), table_name='due_resumes')
    op.drop_table('due_resumes')
    op.drop_index(op.f('ix_thread_watchers_process_id'), table_name='thread_watchers')
    op.drop_table('thread_watchers')
    op.drop_table('thread_leases')
    op.drop_index(op.f('ix_app_processes_heartbeat_at'), table_name='app_processes')
    op.drop_table('app_processes')
