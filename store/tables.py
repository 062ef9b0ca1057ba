"""Every table module of the store, imported once so SQLModel.metadata holds the whole schema.

A module that defines tables adds itself here (migrations' autogenerate and the baseline check read it)."""

from store import (
    door_tables,  # noqa: F401  (login failures and session cut-offs)
    models,  # noqa: F401
)
