"""The read-only thread view for operators: the conversation with its tool steps, and the turn waterfall.

Rendered on the server from the stored messages (what the model saw) and tool calls; every value that came
from a user, a model or a tool is escaped with its hidden characters made visible. No forms, no buttons,
no scripts: an operator reads the thread, nothing on the page acts on it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from store.values import StoredMessage
from ui.safe_text import reveal_block, reveal_line

ROLE_NAMES = {"user": "User", "assistant": "Assistant"}


def cell(value: object) -> str:
    """An untrusted one-line value in HTML: escaped, nothing hidden or reordered."""
    return escape(reveal_line(str(value)))


def block(value: object) -> str:
    """Untrusted multi-line text in a <pre>: escaped, newlines kept, other hidden characters visible."""
    return f"<pre>{escape(reveal_block(str(value)))}</pre>"


def utc(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) if isinstance(b, dict) and b.get("type") == "text"
                         else json.dumps(b, ensure_ascii=False) for b in content)
    return json.dumps(content, ensure_ascii=False)


def _content_block(b: dict[str, Any], calls: dict[str, dict[str, Any]]) -> str:
    kind = b.get("type")
    if kind == "text":
        return f"<div class='text'>{block(b.get('text', ''))}</div>"
    if kind == "tool_use":
        call = calls.get(str(b.get("id")), {})
        status = f" · {cell(call['status'])} · {call.get('duration_ms') or 0:,.0f} ms" if call else ""
        return (f"<div class='step'><div class='step-head'>Tool step <b>{cell(b.get('name', '?'))}</b>{status}</div>"
                f"{block(json.dumps(b.get('input', {}), indent=2, ensure_ascii=False))}</div>")
    if kind == "tool_result":
        label = "Tool error" if b.get("is_error") else "Tool result"
        return (f"<div class='step result'><div class='step-head'>{label} "
                f"<span class='muted'>{cell(b.get('tool_use_id', ''))}</span></div>"
                f"{block(_result_text(b.get('content', '')))}</div>")
    if kind in ("thinking", "redacted_thinking"):
        return "<div class='muted'>(the model's reasoning, not shown)</div>"
    raw = block(json.dumps(b, ensure_ascii=False))
    return f"<div class='step'><div class='step-head'>{cell(kind)}</div>{raw}</div>"


def conversation(messages: list[StoredMessage], tool_calls: list[dict[str, Any]]) -> str:
    calls = {str(c["tool_use_id"]): c for c in tool_calls}
    out = []
    for m in messages:
        flag = " <span class='badge warn'>incomplete</span>" if m.incomplete else ""
        blocks = "".join(_content_block(b, calls) for b in m.content if isinstance(b, dict))
        out.append(f"<article class='msg {cell(m.role)}'><header><b>{cell(ROLE_NAMES.get(m.role, m.role))}</b>"
                   f"{flag}<span class='muted'>{utc(m.created_at)}</span></header>{blocks}</article>")
    return "".join(out) or "<p class='muted'>No messages.</p>"


def waterfall(trace: dict[str, list[dict[str, Any]]]) -> str:
    """Per turn: each model call (time to first token, then the rest), tool time, and the approval wait
    shown apart (human time is not latency)."""
    rows = []
    for c in trace["model_calls"]:
        ttft, total = c.get("ttft_ms") or 0.0, c.get("latency_ms") or 0.0
        rows.append(("model " + str(c["purpose"]), c["created_at"], ttft, max(total - ttft, 0.0),
                     f"{c['stop_reason'] or c['status']} · in {c['input_tokens']} / out {c['output_tokens']} · "
                     f"cache r {c['cache_read_tokens']} w {c['cache_write_5m_tokens'] + c['cache_write_1h_tokens']}"
                     f" · ${c['cost_nanousd'] / 1e9:.6f}"))
    for t in trace["tool_calls"]:
        rows.append(("tool " + t["tool"], t["started_at"], 0.0, t.get("duration_ms") or 0.0,
                     "error" if t["is_error"] else "ok"))
    for ap in trace["approvals"]:
        wait = ((ap["decided_at"] or ap["requested_at"]) - ap["requested_at"]) * 1000
        rows.append(("approval wait " + ap["tool"], ap["requested_at"], 0.0, wait,
                     f"{ap['status']} by {ap['decided_by']}"))
    rows.sort(key=lambda r: r[1])
    scale = max((r[2] + r[3] for r in rows if not r[0].startswith("approval")), default=1.0) or 1.0
    out = ["<table><thead><tr><th>step</th><th>ms</th><th class='wide'>waterfall</th><th>detail</th></tr></thead>"
           "<tbody>"]
    for name, _start, first, rest, detail in rows:
        human = name.startswith("approval")
        a, b = first / scale * 100, rest / scale * 100
        bar = ("<i class='muted'>human time, not latency</i>" if human else
               f"<svg width='100%' height='12' role='img' aria-label='{first + rest:,.0f} ms'>"
               f"<rect class='ttft' width='{a:.1f}%' height='12'/>"
               f"<rect class='rest' x='{a:.1f}%' width='{b:.1f}%' height='12'/></svg>")
        out.append(f"<tr><td>{cell(name)}</td><td class='num'>{first + rest:,.0f}</td><td>{bar}</td>"
                   f"<td>{cell(detail)}</td></tr>")
    if not rows:
        out.append("<tr><td colspan='4' class='muted'>No model or tool calls recorded.</td></tr>")
    out.append("</tbody></table><p class='muted'>blue: time to first token · pink: the rest of the call or the "
               "tool's run</p>")
    return "".join(out)
