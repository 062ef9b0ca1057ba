"""Alembic migrations of Tollgate's schema (run by store/schema.py; env.py is Alembic's entry point)."""
