"""Decisions are data: `Approved | Denied(reason)`; only the store row counts.

No coroutine waits through human time: a card is shown and the turn suspends with the pending row
stored; whoever records the decision later (a click, an operator, the expiry timer) does it through
agent/decide.py, which wakes the thread to go on from the store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True)
class Approved:
    pass


@dataclass(frozen=True)
class Denied:
    reason: str


Decision: TypeAlias = Approved | Denied


def args_digest(tool: str, args: dict[str, Any]) -> str:
    """What the approver saw is what runs: a digest over the tool name and canonical arguments."""
    canonical = json.dumps({"tool": tool, "args": args}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
