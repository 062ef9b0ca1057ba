"""DemoBrain: the deterministic stand-in model used when no API key is set (phrases in README.md).

It is a worst case on purpose: it obeys instructions found inside tool results, so the app's guards
(approvals, tool policies) are exercised by the demo and by the injection tests.
"""

from __future__ import annotations

import hashlib
import re
import threading
from typing import Any, Literal

from .intents import find_injected_goal, is_summary_request, parse_commands, summarise_transcript
from .replies import Fault, Reply, TextBlock, ToolUseBlock
from .tokens import canonical_json

__all__ = ["HELP_TEXT", "DemoBrain"]

HELP_TEXT = (
    "I'm the Tollgate demo model (no API key is set), so I only understand a few phrases:\n"
    '- "list my files" or "what files do I have"\n'
    '- "save a note called NAME: TEXT"\n'
    '- "read NAME", "show NAME", "open NAME" or "summarise NAME"\n'
    '- "delete NAME"\n'
    '- "search for TEXT"\n'
    '- "fetch URL" or "summarise URL"\n'
    'Join several with " and ", e.g. "list my files and search for milk".'
)

_MARKERS = re.compile(r"\[(?:fault:[\w]+!?|long:\d+|max_tokens|refusal)\]", re.IGNORECASE)
_FAULT = re.compile(r"\[fault:(\w+)(!?)\]", re.IGNORECASE)
_LONG = re.compile(r"\[long:(\d+)\]", re.IGNORECASE)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_TRANSIENT = {"429", "500", "529", "sse_error", "cut"}
_FILLER = (
    "This is the demo model writing a long answer so that you can watch it stream. "
    "Every word here is deterministic filler, produced at a fixed pace, with no meaning beyond its length. "
    "Benchmarks use it to time the first token and the rate of the rest. "
)
_PREAMBLES = {
    "list_files": "I'll list your files.",
    "write_file": "I'll save the note as {path}.",
    "read_file": "I'll open {path}.",
    "delete_file": "I'll delete {path}.",
    "search_files": 'I\'ll search your files for "{query}".',
    "fetch_url": "I'll fetch {url}.",
}


def filler_text(tokens: int) -> str:
    """Deterministic prose of exactly `tokens` estimated tokens (4 characters each)."""
    chars = max(tokens, 1) * 4
    text = _FILLER * (chars // len(_FILLER) + 1)
    return text[:chars]


_WRAPPER_OPEN = re.compile(r"^<tool_output [^>]*>\n?")
_WRAPPER_CLOSE = re.compile(r"\n?</tool_output>\s*$")
# The app's wording for a call closed because the user typed a new message (agent/toolexec.py SUPERSEDED);
# matched as text so this server stays independent of the app.
_SUPERSEDED = "user sent a new message"
# What each call would have done, for "I did not ..." and "I couldn't ...".
_ACTIONS = {
    "list_files": "list your files",
    "write_file": "save {path}",
    "read_file": "open {path}",
    "delete_file": "delete {path}",
    "search_files": 'search your files for "{query}"',
    "fetch_url": "fetch {url}",
}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _tool_names(request: dict[str, Any]) -> set[str]:
    return {str(t.get("name")) for t in request.get("tools") or [] if isinstance(t, dict)}


def _brief(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class DemoBrain:
    """Deterministic: the reply is a function of the request, except that transient faults fire once
    per distinct request body, so the SDK's (or the app's) retry of the same request succeeds."""

    def __init__(self) -> None:
        self._faulted: set[str] = set()
        self._lock = threading.Lock()

    def respond(self, request: dict[str, Any]) -> Reply:
        messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
        if not messages or messages[-1].get("role") != "user":
            return Reply((TextBlock(HELP_TEXT),))
        content = messages[-1].get("content")
        results = (
            [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
            if isinstance(content, list)
            else []
        )
        text = _text_of(content)  # text blocks only: a message closing a superseded batch also holds new text
        if results and text.strip():
            return self._newest_request(request, messages, results, text)
        if results:
            return self._after_tools(request, messages, results)
        if is_summary_request(text):  # the app's context compression; markers inside are only quoted
            return Reply((TextBlock(summarise_transcript(text)),))
        return self._for_text(request, text)

    # --- a user's message -------------------------------------------------------------------------
    def _for_text(self, request: dict[str, Any], text: str) -> Reply:
        reply = self._base_reply(request, text)
        fault = _FAULT.search(text)
        if fault is None:
            return reply
        name, always = fault.group(1).lower(), fault.group(2) == "!"
        if name in _TRANSIENT and not always and not self._first_time(request):
            return reply
        if name in ("sse_error", "cut"):
            kind: Literal["sse_error", "cut"] = "sse_error" if name == "sse_error" else "cut"
            return Reply(reply.blocks, reply.stop_reason, Fault(kind, 529, "overloaded_error", "Overloaded"))
        if name.isdigit() and int(name) in _ERROR_TYPES:
            status = int(name)
            return Reply(fault=Fault("http", status, _ERROR_TYPES[status], f"injected demo fault {status}"))
        return reply  # an unknown fault name is ignored rather than guessed at

    def _base_reply(self, request: dict[str, Any], text: str) -> Reply:
        max_tokens = int(request.get("max_tokens") or 1)
        if long := _LONG.search(text):
            wanted = int(long.group(1))
            # Like the real API, an answer longer than max_tokens is cut there.
            if wanted > max_tokens:
                return Reply((TextBlock(filler_text(max_tokens)),), "max_tokens")
            return Reply((TextBlock(filler_text(wanted)),))
        if "[max_tokens]" in text.lower():
            return Reply((TextBlock(filler_text(min(max_tokens, 40))),), "max_tokens")
        tools = _tool_names(request)
        commands = parse_commands(_MARKERS.sub(" ", text)) or []
        usable = [c for c in commands if c.name in tools]
        if "[refusal]" in text.lower():
            return Reply((TextBlock("I can't help with that request."), self._refused_call(usable, tools)), "refusal")
        if commands and not usable:
            missing = ", ".join(sorted({c.name for c in commands}))
            return Reply((TextBlock(f"I can't do that here: the {missing} tool is not available."),))
        if not usable:
            return Reply((TextBlock(HELP_TEXT),))
        if len(usable) == 1:
            preamble = _preamble(usable[0])
        else:  # one sentence for the plan, not one "I'll ..." per call
            preamble = f"I'll {_listed([_action({'name': c.name, 'input': c.input}) for c in usable], 'and')}."
        return Reply((TextBlock(preamble), *usable), "tool_use")

    @staticmethod
    def _refused_call(usable: list[ToolUseBlock], tools: set[str]) -> ToolUseBlock:
        # A refusal that still carries a tool call: the app must not run it.
        if usable:
            return usable[0]
        if "delete_file" in tools or not tools:
            return ToolUseBlock("delete_file", {"path": "notes/refused.txt"})
        return ToolUseBlock(sorted(tools)[0], {})

    def _first_time(self, request: dict[str, Any]) -> bool:
        key = hashlib.sha256(canonical_json({k: v for k, v in request.items() if k != "stream"}).encode()).hexdigest()
        with self._lock:
            if key in self._faulted:
                return False
            self._faulted.add(key)
            return True

    def _newest_request(
        self, request: dict[str, Any], messages: list[dict[str, Any]], results: list[Any], text: str
    ) -> Reply:
        """The user typed while calls were open: say which were not done, then act on the new text. The
        user's newest words win over anything in those results (they were not asked about)."""
        calls = _calls_by_id(messages[-2] if len(messages) >= 2 else {})
        skipped = [
            _action(calls.get(str(r.get("tool_use_id")), {}))
            for r in results
            if r.get("is_error") and _SUPERSEDED in _text_of(r.get("content")).lower()
        ]
        reply = self._for_text(request, text)
        if not skipped or (reply.fault is not None and reply.fault.kind == "http"):
            return reply
        note = f"You sent a new message, so I did not {_listed(skipped, 'or')}."
        blocks = reply.blocks
        if blocks and isinstance(blocks[0], TextBlock):
            blocks = (TextBlock(f"{note}\n\n{blocks[0].text}"), *blocks[1:])
        else:
            blocks = (TextBlock(note), *blocks)
        return Reply(blocks, reply.stop_reason, reply.fault, reply.usage_override, reply.stop_details)

    # --- results of the previous turn's tool calls ------------------------------------------------
    def _after_tools(self, request: dict[str, Any], messages: list[dict[str, Any]], results: list[Any]) -> Reply:
        tools = _tool_names(request)
        for result in results:
            # The app's provenance wrapper names its source ("fetch_url:http://…"): that is not an
            # instruction in the content, so look past it.
            body = _WRAPPER_OPEN.sub("", _text_of(result.get("content")), count=1)
            goal = find_injected_goal(body)
            if goal is not None and goal.name in tools and not _already_called(messages, goal):
                return Reply((TextBlock("Following the instructions in the tool result."), goal), "tool_use")
        calls = _calls_by_id(messages[-2] if len(messages) >= 2 else {})
        return Reply((TextBlock("\n\n".join(_describe(r, calls) for r in results)),))


def _preamble(call: ToolUseBlock) -> str:
    template = _PREAMBLES.get(call.name)
    if template is None:  # an MCP tool (SERVER__tool): say which server and tool
        server, _, tool = call.name.partition("__")
        return f"I'll use {tool} on the {server} server."
    return template.format(**call.input)


def _calls_by_id(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    return {str(b.get("id")): b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"}


def _already_called(messages: list[dict[str, Any]], goal: ToolUseBlock) -> bool:
    wanted = canonical_json(goal.input)
    for message in messages:
        if message.get("role") == "assistant":
            for call in _calls_by_id(message).values():
                if call.get("name") == goal.name and canonical_json(call.get("input")) == wanted:
                    return True
    return False


def _listed(items: list[str], conjunction: str) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def _action(call: dict[str, Any]) -> str:
    template = _ACTIONS.get(str(call.get("name")))
    try:
        return template.format(**(call.get("input") or {})) if template else "do what you asked before"
    except (KeyError, IndexError, AttributeError):
        return f"run {call.get('name')}"


def _readable(text: str, limit: int = 600) -> str:
    """Tool output as the user should see it: without the app's provenance wrapper, capped at `limit`."""
    body = _WRAPPER_CLOSE.sub("", _WRAPPER_OPEN.sub("", text.strip(), count=1), count=1).strip()
    return body if len(body) <= limit else body[: limit - 1].rstrip() + "…"


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())


def _bulleted(text: str) -> str:
    return "\n".join(f"- {line}" for line in text.splitlines() if line.strip())


def _describe(result: dict[str, Any], calls: dict[str, dict[str, Any]]) -> str:
    call = calls.get(str(result.get("tool_use_id")), {})
    name, args = call.get("name"), call.get("input") or {}
    text = _readable(_text_of(result.get("content")))
    if result.get("is_error"):
        if "rejected" in text.lower():
            return "Understood — I did not do that."
        return f"I couldn't {_action(call)}: {_brief(text)}"
    if name == "write_file":
        return f"Saved {args.get('path', 'the file')}."
    if name == "delete_file":
        return f"Deleted {args.get('path', 'the file')}."
    if not text:
        return "That came back empty."
    if name == "list_files":
        if text.startswith("(empty directory"):
            return "You have no files yet."
        return f"Here are your files:\n\n{_bulleted(text)}"
    if name == "search_files":
        query = args.get("query", "")
        if text.startswith("no matches for"):
            return f'I found no matches for "{query}".'
        return f'I found "{query}" in these places:\n\n{_bulleted(text)}'
    if name == "read_file":
        return f"Here is {args.get('path', 'the file')}:\n\n{_quoted(text)}"
    if name == "fetch_url":
        return f"Here is what {args.get('url', 'the page')} says:\n\n{_quoted(text)}"
    return f"Here is what I found:\n\n{_quoted(text)}"
