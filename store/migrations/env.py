"""Alembic's entry point. Tollgate always hands it an open connection inside its own transaction
(store/schema.py): no URL, no logging config, no engine of its own here."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import store.tables  # noqa: F401  (every table on SQLModel.metadata, for autogenerate)
from store.schema import include_object

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through store.schema (tollgate db upgrade), not the alembic command")
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=connection.dialect.name != "sqlite",  # SQLite: INTEGER is BIGINT; types are affinities
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
