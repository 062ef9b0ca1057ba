"""The model a user wants for new threads, and the model settings each thread was started with
(store/model_prefs.py). New tables only.

Revision ID: 0005_model_prefs
Revises: 0004_cluster
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_model_prefs"
down_revision: str | None = "0004_cluster"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_model_prefs",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("effort", sa.String(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "thread_model_settings",
        sa.Column("thread_id", sa.String(), sa.ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("effort", sa.String(), nullable=False),
        sa.Column("thinking", sa.String(), nullable=False),
        sa.Column("display", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("thread_model_settings")
    op.drop_table("user_model_prefs")
