"""Approval routing as data: which human must decide a side-effecting call (see policy.toml)."""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import Tool, ToolError, normalise_path

DEFAULT_POLICY = Path(__file__).with_name("policy.toml")
ROUTES = ("none", "user", "operator")
_STRICTNESS = {"none": 0, "user": 1, "operator": 2}


class _Unresolvable(Exception):
    """The call's path cannot be normalised the way the workspace would resolve it."""


@dataclass(frozen=True)
class Rule:
    tool: str
    route: str
    path: str | None = None

    def applies_to(self, tool: Tool) -> bool:
        return self.tool in (tool.name, "*")

    def matches(self, tool: Tool, args: dict[str, Any]) -> bool:
        if not self.applies_to(tool):
            return False
        if self.path is None:
            return True
        if "path" not in args:
            return False
        # Match what the workspace would touch, not how the model spelt it: `notes/.` is the file `notes`.
        try:
            path = normalise_path(args["path"])
        except ToolError:
            raise _Unresolvable from None
        return fnmatch.fnmatchcase(path, self.path)


class ApprovalPolicy:
    def __init__(self, rules: list[Rule]) -> None:
        for r in rules:
            if r.route not in ROUTES:
                raise ValueError(f"approval policy: route must be one of {ROUTES}, not {r.route!r}")
        self.rules = rules

    @classmethod
    def load(cls, path: Path | None = None) -> ApprovalPolicy:
        path = path or Path(os.environ.get("TOLLGATE_APPROVAL_POLICY_FILE") or DEFAULT_POLICY)
        data = tomllib.loads(path.read_text())
        return cls([Rule(tool=r["tool"], route=r["route"], path=r.get("path")) for r in data.get("rule", [])])

    def route_for(self, tool: Tool, args: dict[str, Any]) -> str:
        try:
            route = next((r.route for r in self.rules if r.matches(tool, args)), "user")
        except _Unresolvable:  # fail closed: the strictest route any rule for this tool could give
            route = max((r.route for r in self.rules if r.applies_to(tool)), key=_STRICTNESS.__getitem__,
                        default="user")
        # "none" cannot waive the gate for a tool that changes state or sends data: fail closed to the user.
        return "user" if route == "none" else route
