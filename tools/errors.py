"""Exceptions shared by every tool module.

They live here, not in registry.py, so that workspace.py and netguard.py can raise them without an
import cycle (registry imports both). registry.py re-exports them; import them from there.
"""

from __future__ import annotations


class ToolError(Exception):
    """A tool's own clear, user-facing failure, e.g. "no such file: notes/a.txt"."""


class ToolArgumentError(ValueError):
    """Arguments that do not match a tool's schema; the message names the field and the problem."""
