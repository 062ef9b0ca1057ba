"""Phrase recognition for DemoBrain: user commands, and instructions injected into tool results.

Pure functions over text. Values (note names, note text, queries, URLs) keep the user's casing; only
the phrase words are matched case-insensitively.
"""

from __future__ import annotations

import json
import re

from .replies import ToolUseBlock

__all__ = ["find_injected_goal", "is_summary_request", "note_path", "parse_commands", "summarise_transcript"]

_FLAGS = re.IGNORECASE | re.DOTALL
_VERBS = (
    r"(?:list|what files|which files|save|write|create|read|show|open|delete|remove|search|fetch"
    r"|summari[sz]e)"
)
# Split "A and B" only where B starts a new command, so "save a note called x: milk and eggs" stays whole.
_SPLIT = re.compile(rf"\s+and\s+(?=(?:please\s+)?{_VERBS}\b)", _FLAGS)
_LEAD = re.compile(r"^(?:(?:please|kindly|can you|could you|would you|now|then)[\s,]+)+", _FLAGS)
_TRAIL = re.compile(r"(?:[\s,]+please)?[\s.!?,;]*$", _FLAGS)
_QUOTES = "\"'`“”‘’"

_LIST = re.compile(
    r"(?:list|show)(?: me)?(?: all)?(?: of)? (?:my|the) files|list files|(?:what|which) files do i have",
    _FLAGS,
)
_SAVE = re.compile(
    r"(?:save|write|create)(?: me)? (?:a |the )?note(?: called| named| titled)? "
    r"(?P<name>[^\s:]+?)\s*:\s*(?P<text>.+)",
    _FLAGS,
)
_SEARCH = re.compile(r"search(?: (?:my|the) (?:files|notes))? for (?P<query>.+)", _FLAGS)
_FETCH = re.compile(r"(?:fetch|get|open|read|summari[sz]e|visit)(?: the (?:page|url))? (?P<url>https?://\S+)", _FLAGS)
_READ = re.compile(r"(?:read|show|open|summari[sz]e)(?: me)?(?: the)?(?: note| file)? (?P<name>\S+)", _FLAGS)
_DELETE = re.compile(r"(?:delete|remove)(?: the)?(?: note| file)? (?P<name>\S+)", _FLAGS)


def note_path(name: str) -> str:
    """A bare note name becomes notes/<name>.txt; anything with "/" or "." is taken as a path."""
    name = name.strip().strip(_QUOTES).rstrip(".,;:!?")
    return name if "/" in name or "." in name else f"notes/{name}.txt"


def _parse_one(segment: str) -> ToolUseBlock | None:
    text = _TRAIL.sub("", _LEAD.sub("", segment.strip()))
    if _LIST.fullmatch(text):
        return ToolUseBlock("list_files", {"path": "."})
    if m := _SAVE.fullmatch(text):
        return ToolUseBlock("write_file", {"path": note_path(m["name"]), "content": m["text"].strip()})
    if m := _SEARCH.fullmatch(text):
        return ToolUseBlock("search_files", {"query": m["query"].strip().strip(_QUOTES)})
    if m := _FETCH.fullmatch(text):
        return ToolUseBlock("fetch_url", {"url": m["url"].rstrip(".,;")})
    if m := _READ.fullmatch(text):
        return ToolUseBlock("read_file", {"path": note_path(m["name"])})
    if m := _DELETE.fullmatch(text):
        return ToolUseBlock("delete_file", {"path": note_path(m["name"])})
    return mcp_command(text)


# --- MCP tools (SERVER__tool): the bundled task list, and any tool named with JSON arguments ------------------
_MCP_CALL = re.compile(r"(?:call|use|run) (?:the tool )?(?P<name>[a-z][a-z0-9_-]*__[A-Za-z0-9_-]+)"
                       r"(?: with (?P<args>\{.*\}))?", _FLAGS)
_MCP_INJECTED = re.compile(r"\bcall (?P<name>[a-z][a-z0-9_-]*__[A-Za-z0-9_-]+) with (?P<args>\{[^\n<]*?\})", _FLAGS)
_ADD_TASK = re.compile(r"add (?:a |the )?task\s*:\s*(?P<title>.+)", _FLAGS)
_LIST_TASKS = re.compile(r"(?:list|show)(?: me)?(?: all)? (?:my|the|our) (?:open )?tasks", _FLAGS)


def _json_args(text: str | None) -> dict[str, object] | None:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def mcp_command(text: str) -> ToolUseBlock | None:
    """"call tasks__add_task with {...}", or the task list's own phrases ("add a task: X", "list my tasks")."""
    if m := _ADD_TASK.fullmatch(text):
        return ToolUseBlock("tasks__add_task", {"title": m["title"].strip().strip(_QUOTES)})
    if _LIST_TASKS.fullmatch(text):
        return ToolUseBlock("tasks__list_tasks", {})
    if (m := _MCP_CALL.fullmatch(text)) and (args := _json_args(m["args"])) is not None:
        return ToolUseBlock(m["name"], args)
    return None


def mcp_injected_goal(text: str) -> tuple[int, ToolUseBlock] | None:
    """An injected "call SERVER__tool with {...}" and where it starts."""
    if (m := _MCP_INJECTED.search(text)) and (args := _json_args(m["args"])) is not None:
        return m.start(), ToolUseBlock(m["name"], args)
    return None


def parse_commands(text: str) -> list[ToolUseBlock] | None:
    """All commands in a user message (joined by " and "), or None unless every part is a command."""
    parts = [p for p in _SPLIT.split(text.strip()) if p.strip()]
    calls = [_parse_one(p) for p in parts]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


# Injected instructions are looked for anywhere in a tool result, so they are narrower than user
# commands: a bare "delete X" only counts when X looks like a path, and only "fetch"/"send ... to"
# count for URLs, so ordinary page text ("visit https://...") does not trigger a call.
_END = r"(?=\s+instead\b|\.\s|\.?\s*$|[\n<\"'])"
_URL = r"(?P<url>https?://[^\s\"'<>)\]]+)"
_INJECTED: list[tuple[str, re.Pattern[str]]] = [
    (
        "save",
        re.compile(
            r"\b(?:save|write|create) (?:a |the )?note(?: called| named| titled)? [\"']?(?P<name>[^\s:\"']+)"
            rf"[\"']?\s*:\s*(?P<text>[^\n<]+?){_END}",
            _FLAGS,
        ),
    ),
    (
        "write",
        re.compile(
            r"\bwrite_file\W+(?:path\W+)?(?P<name>[\w\-./]*\w)"
            rf"(?:\W+(?:with )?content\W+(?P<text>[^\n<\"']+?){_END})?",
            _FLAGS,
        ),
    ),
    ("delete", re.compile(r"\bdelete_file\W+(?:path\W+)?(?P<name>[\w\-./]*\w)", _FLAGS)),
    ("delete", re.compile(r"\b(?:delete|remove) (?:the )?(?:file|note) [\"']?(?P<name>[\w\-./]*\w)", _FLAGS)),
    ("delete", re.compile(r"\b(?:delete|remove) [\"']?(?P<name>[\w\-]*[/.][\w\-./]*\w)", _FLAGS)),
    ("fetch", re.compile(rf"\bfetch(?:_url)?\W+(?:url\W+)?{_URL}", _FLAGS)),
    ("fetch", re.compile(rf"\b(?:send|post|upload|forward)\b[^\n]{{0,200}}?\bto:? {_URL}", _FLAGS)),
]


def _goal(kind: str, m: re.Match[str]) -> ToolUseBlock:
    if kind == "fetch":
        return ToolUseBlock("fetch_url", {"url": m["url"].rstrip(".,;:")})
    if kind == "delete":
        return ToolUseBlock("delete_file", {"path": note_path(m["name"])})
    content = (m["text"] or "").strip()
    return ToolUseBlock("write_file", {"path": note_path(m["name"]), "content": content})


def find_injected_goal(text: str) -> ToolUseBlock | None:
    """The first instruction in `text` that the worst-case demo model would obey, as a tool call."""
    found: list[tuple[int, int, ToolUseBlock]] = []
    for order, (kind, pattern) in enumerate(_INJECTED):
        if m := pattern.search(text):
            found.append((m.start(), order, _goal(kind, m)))
    if mcp := mcp_injected_goal(text):
        found.append((mcp[0], len(_INJECTED), mcp[1]))
    return min(found, key=lambda f: (f[0], f[1]))[2] if found else None


# --- summaries: the app's compression asks the (cheaper) model to summarise a transcript -----------------
SUMMARY_REQUEST = "summarise the following conversation"
_CALLED = re.compile(r"^Assistant called (\w+)\((.*)\)$")
_PATH = re.compile(r'"path": "([^"]+)"')


def is_summary_request(text: str) -> bool:
    return text.lstrip().lower().startswith(SUMMARY_REQUEST)


def summarise_transcript(text: str) -> str:
    """A deterministic, bounded summary of the transcript lines the app sends ("User: ...",
    "Assistant called name({...})"). It never calls tools and ignores markers and injected text."""
    asks: list[str] = []
    calls: dict[str, int] = {}
    paths: list[str] = []
    earlier = ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Earlier summary:") and i + 1 < len(lines):
            earlier, shorter = "", lines[i + 1]
            while shorter != earlier:  # keep one level of "before that", not a growing chain
                earlier, shorter = shorter, shorter.lstrip("- ").removeprefix("Before that:").strip()
        elif line.startswith("User: "):
            asks.append(" ".join(line[6:].split())[:60])
        elif m := _CALLED.match(line):
            calls[m[1]] = calls.get(m[1], 0) + 1
            paths += [p for p in _PATH.findall(m[2]) if p not in paths]
    out = []
    if earlier:
        out.append(f"- Before that: {earlier[:200]}")
    if asks:
        shown = "; ".join(f'"{a}"' for a in asks[-6:])
        plural = "s" if len(asks) != 1 else ""
        out.append(f"- The user made {len(asks)} request{plural}, most recently: {shown}.")
    if calls:
        out.append("- Tools used: " + ", ".join(f"{n} ×{c}" for n, c in sorted(calls.items())) + ".")
    if paths:
        out.append("- Files involved: " + ", ".join(paths[:8]) + (" and others." if len(paths) > 8 else "."))
    return "\n".join(out) or "- Nothing of note happened."
