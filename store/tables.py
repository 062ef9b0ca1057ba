"""Every table module of the store, imported once so SQLModel.metadata holds the whole schema.

A module that defines tables adds itself here (migrations' autogenerate and the baseline check read it)."""

from store import (
    cluster_tables,  # noqa: F401  (process registry, leases, watchers, due resumes)
    door_tables,  # noqa: F401  (login failures and session cut-offs)
    model_prefs,  # noqa: F401  (users' model choices, threads' fixed model settings)
    models,  # noqa: F401
)
