"""Approval routing as data: which human must decide a side-effecting call (see policy.toml)."""

from __future__ import annotations

import fnmatch
import json
import os
import tomllib
from dataclasses import dataclass, field
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
    tool: str  # a name or a glob: "tasks__*" is every tool of the MCP server "tasks"
    route: str
    path: str | None = None
    args: dict[str, str] = field(default_factory=dict)  # argument name -> glob over its value (JSON if not a string)
    hints: dict[str, bool] = field(default_factory=dict)  # the tool's own (untrusted) hints, e.g. destructiveHint

    def applies_to(self, tool: Tool) -> bool:
        return fnmatch.fnmatchcase(tool.name, self.tool)

    def matches(self, tool: Tool, args: dict[str, Any]) -> bool:
        if not self.applies_to(tool) or any(tool.hints.get(k) is not v for k, v in self.hints.items()):
            return False
        for name, glob in self.args.items():
            if name not in args:
                return False
            value = args[name]
            if not fnmatch.fnmatchcase(value if isinstance(value, str) else json.dumps(value, sort_keys=True), glob):
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


def _rule(raw: dict[str, Any], index: int) -> Rule:
    where = f"approval policy: rule {index + 1}"
    unknown = set(raw) - {"tool", "route", "path", "args", "hints"}
    if unknown:
        raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    args, hints = raw.get("args", {}), raw.get("hints", {})
    if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
        raise ValueError(f"{where}: args must be a table of glob strings")
    if not isinstance(hints, dict) or not all(isinstance(v, bool) for v in hints.values()):
        raise ValueError(f"{where}: hints must be a table of true/false values")
    return Rule(tool=raw["tool"], route=raw["route"], path=raw.get("path"), args=dict(args), hints=dict(hints))


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
        return cls([_rule(r, i) for i, r in enumerate(data.get("rule", []))])

    def route_for(self, tool: Tool, args: dict[str, Any]) -> str:
        try:
            route = next((r.route for r in self.rules if r.matches(tool, args)), "user")
        except _Unresolvable:  # fail closed: the strictest route any rule for this tool could give
            route = max((r.route for r in self.rules if r.applies_to(tool)), key=_STRICTNESS.__getitem__,
                        default="user")
        # "none" cannot waive the gate for a tool that changes state or sends data: fail closed to the user.
        return "user" if route == "none" else route
