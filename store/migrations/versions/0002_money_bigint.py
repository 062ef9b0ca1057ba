"""Money columns (nano-USD) as 64-bit integers: PostgreSQL's INTEGER is 32-bit, so any amount above
$2.147 (a daily budget of $5, a month's spend) did not fit. SQLite's INTEGER is already 64-bit: nothing to do.

Revision ID: 0002_money_bigint
Revises: 0001_baseline
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_money_bigint"
down_revision: str | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = {"model_calls": ("reserved_nanousd", "cost_nanousd"), "budgets": ("daily_nanousd", "monthly_nanousd"),
         "estimate_margins": ("overrun_nanousd",)}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in MONEY.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in MONEY.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
