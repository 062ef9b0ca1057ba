"""Text of what the chat shows: approval cards, usage lines, notices. Pure functions, no chainlit."""

from __future__ import annotations

import difflib
import json
import time

from agent.events import Notice, UsageReport
from store.values import Approval
from tools import ToolError, Workspace
from ui.safe_markdown import sanitize
from ui.safe_text import code_span, fence, md_text, reveal_line

DISPLAY_OUTPUT_CHARS = 2_000
DIFF_LINES = 40


def write_diff(workspace: Workspace, args: dict[str, object]) -> str:
    """What an approved write_file would change, as a unified diff against the current file."""
    path, new = str(args.get("path", "")), str(args.get("content", ""))
    try:
        old, _ = workspace.read_text(path)
    except ToolError:
        old = ""
    shown = reveal_line(path)  # a newline in the path cannot paint a line of its own
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), f"{shown} (now)", f"{shown} (after)", lineterm="")
    return "\n".join(lines) or "(no change)"


def card_text(a: Approval, *, thread_cost: str = "", left_today: str = "", now: float | None = None,
              diff: str | None = None, always_suspended: bool = False) -> str:
    now = time.time() if now is None else now
    args = json.dumps(a.args, indent=2, sort_keys=True, ensure_ascii=False)
    lines = [f"**Approval needed: {code_span(a.tool)}**",
             f"Risk: {md_text(a.risk) if a.risk else 'changes something outside the chat.'}", fence(args, "json")]
    if diff is not None:
        shown = diff.splitlines()
        hidden = len(shown) - DIFF_LINES
        more = f"\n… {hidden} more lines (the exact arguments are above)" if hidden > 0 else ""
        lines.append("What changes:\n" + fence("\n".join(shown[:DIFF_LINES]), "diff") + more)
    if a.untrusted_sources:
        sources = ", ".join(code_span(s) for s in a.untrusted_sources)
        lines.append(f"⚠️ Untrusted content is in this conversation: {sources}. Check that *you* asked for this action.")
    if always_suspended:
        lines.append(f"You chose to always approve {code_span(a.tool)} here, but that is suspended while untrusted "
                     "content is in this thread: decide this one yourself.")
    if thread_cost or left_today:
        lines.append(f"This thread has cost {thread_cost}; {left_today} left today.")
    if a.route == "operator":
        lines.append("Waiting for an operator to decide. You can still reject it yourself.")
    left = int(a.expires_at - now)
    lines.append(f"Expires in {left // 60} min {left % 60} s if nobody decides." if left > 0 else "Expired.")
    return "\n\n".join(lines)


def outcome_text(a: Approval) -> str:
    args = json.dumps(a.args, indent=2, sort_keys=True, ensure_ascii=False)
    heads = {"approved": "✅ Approved", "rejected": "❌ Rejected", "expired": "⌛ Expired — not run"}
    head = heads.get(a.status, a.status)
    who = f" by {md_text(a.decided_by)}" if a.decided_by and a.status != "expired" else ""
    if a.decided_via == "always":
        who = f" automatically (you chose to always approve {code_span(a.tool)} in this thread)"
    why = f" — {md_text(a.reason)}" if a.reason and a.status != "approved" else ""
    return f"{head}{who}{why}: {code_span(a.tool)}\n{fence(args, 'json')}"


def usage_line(u: UsageReport) -> str:
    return (f"{u.input_tokens:,} tokens in / {u.output_tokens:,} out · cache read {u.cache_read_share:.0%} · "
            f"this answer {u.answer_cost_usd} · thread {u.thread_cost_usd} · "
            f"today {u.today_usd} of {u.daily_limit_usd}")


def usage_footer(line: str) -> str:
    """The usage line under an answer: a rule, then the line in italics (public/tollgate.css makes a
    message's closing `hr + p` small and grey)."""
    return f"---\n\n*{line}*"


def notice_text(n: Notice) -> str:
    icon = {"budget": "💸", "api_error": "⚠️", "refusal": "🚫", "max_tokens": "✂️", "call_cap": "🛑"}.get(n.kind, "ℹ️")
    return f"{icon} {sanitize(n.message)}"


def display_output(text: str) -> str:
    """A tool's output is data, not markup: shown as text in a block nothing inside can close."""
    if len(text) <= DISPLAY_OUTPUT_CHARS:
        return fence(text, "text")
    more = f"… ({len(text) - DISPLAY_OUTPUT_CHARS:,} more characters kept in the log)"
    return fence(text[:DISPLAY_OUTPUT_CHARS], "text") + "\n\n" + more


def tool_input(args: dict[str, object]) -> str:
    """A tool call's arguments as a JSON block (bidi and control characters visible)."""
    return fence(json.dumps(args, indent=2, ensure_ascii=False), "json")


def always_on_text(tool: str) -> str:
    return f"{code_span(tool)} runs without asking in this thread."


def compression_text(messages: int, before: int, after: int) -> str:
    return (f"Summarised {messages} earlier messages for the model: about {before:,} → {after:,} tokens. "
            "The full history stays here and in the database.")
