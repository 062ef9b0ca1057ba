"""Approval routing as data: which human must decide a side-effecting call (see policy.toml)."""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import Tool

DEFAULT_POLICY = Path(__file__).with_name("policy.toml")
ROUTES = ("none", "user", "operator")


@dataclass(frozen=True)
class Rule:
    tool: str
    route: str
    path: str | None = None

    def matches(self, tool: Tool, args: dict[str, Any]) -> bool:
        if self.tool not in (tool.name, "*"):
            return False
        if self.path is None:
            return True
        value = args.get("path")
        return isinstance(value, str) and fnmatch.fnmatchcase(value, self.path)


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
        for rule in self.rules:
            if rule.matches(tool, args):
                # "none" cannot waive the gate for a tool that changes state: fail closed to the user.
                return "user" if rule.route == "none" else rule.route
        return "user"
