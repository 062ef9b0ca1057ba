"""Python tools without forking: `@tool` functions from modules the deployment names.

Two ways, both read at start-up: TOLLGATE_TOOL_MODULES="pkg.mod,other.mod" (comma-separated module paths on
sys.path), and installed packages that declare an entry point in the group "tollgate.tools" whose value is a
module. Every module-level Tool in such a module is registered; names must not clash with the built-ins.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from types import ModuleType

from tools.registry import Tool

ENTRY_POINT_GROUP = "tollgate.tools"


class ToolModuleError(ValueError):
    """A named tool module cannot be loaded; the message names the setting and the module."""


def tools_in(module: ModuleType) -> list[Tool]:
    found = [v for v in vars(module).values() if isinstance(v, Tool)]
    return sorted({t.name: t for t in found}.values(), key=lambda t: t.name)


def _import(name: str, where: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as e:
        raise ToolModuleError(f"{where}: cannot import {name!r}: {type(e).__name__}: {e}") from None


def extra_tools(setting: str | None = None) -> list[Tool]:
    """The tools of TOLLGATE_TOOL_MODULES and of the "tollgate.tools" entry points."""
    setting = os.environ.get("TOLLGATE_TOOL_MODULES", "") if setting is None else setting
    modules = [(_import(n.strip(), "TOLLGATE_TOOL_MODULES"), n.strip()) for n in setting.split(",") if n.strip()]
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        modules.append((_import(ep.value, f"entry point {ENTRY_POINT_GROUP}:{ep.name}"), ep.value))
    out: list[Tool] = []
    for module, name in modules:
        tools = tools_in(module)
        if not tools:
            raise ToolModuleError(f"tool module {name!r} defines no @tool functions")
        out += tools
    return out
