"""HTML, SVG and diffs for the operator console. Everything shown that came from a user, a model or a
tool is escaped (server side) or set as textContent (client side): approval arguments are untrusted."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from html import escape
from typing import Any

from store.audit import SpendRow
from store.values import StoredMessage
from ui.safe_text import reveal_block, reveal_line

STYLE = """
body{font:14px system-ui,sans-serif;margin:0;background:#111;color:#eee}
header{padding:12px 20px;background:#1d1d1d;display:flex;gap:20px;align-items:center}
main{padding:0 20px 40px}h2{margin-top:28px}a{color:#f58ab0}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #333;padding:6px;text-align:left;vertical-align:top}
pre{white-space:pre-wrap;margin:0;max-height:240px;overflow:auto;background:#1b1b1b;padding:6px}
.card{border:1px solid #444;border-radius:8px;padding:10px;margin:10px 0}
.warn{color:#ffb347}button{margin-right:6px}input{background:#222;color:#eee;border:1px solid #555;padding:4px}
.bar{fill:#f58ab0}.axis{fill:#aaa;font-size:11px}.wide{width:50%}
"""

CONSOLE_JS = """
const $ = (s) => document.querySelector(s);
// Like ui/safe_text.py: controls and bidi/invisible characters shown as <U+...>, newlines too outside <pre>.
const HIDDEN = new RegExp('[\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f\\u061c\\u180e\\u200b-\\u200f'
  + '\\u202a-\\u202e\\u2028\\u2029\\u2060\\u2066-\\u2069\\ufeff]', 'g');
const hex = (c) => c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
function shown(text, keepLines) {
  const s = String(text).replace(HIDDEN, (c) => '<U+' + hex(c) + '>');
  return keepLines ? s : s.replace(/\\n/g, '\u240a').replace(/\\t/g, '\u2409'); }
function el(tag, text, cls) { const e = document.createElement(tag);
  if (text !== undefined) e.textContent = shown(text, tag === 'pre');
  if (cls) e.className = cls; return e; }
async function post(url, body) {
  const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                              body: JSON.stringify(body)});
  if (!r.ok) { let d = ''; try { d = (await r.json()).detail; } catch (e) {}
    alert('Failed: ' + r.status + (d ? ' — ' + d : '')); } return r; }
async function decide(id, decision) {
  const reason = decision === 'rejected' ? ($('#reason-' + id).value || null) : null;
  await post('/operator/api/approvals/' + id, {decision, reason}); refresh(); }
async function refresh() {
  const items = await (await fetch('/operator/api/pending')).json();
  const box = $('#pending'); box.replaceChildren();
  if (!items.length) box.append(el('p', 'Nothing waiting.'));
  for (const a of items) {
    const card = el('div', undefined, 'card'); card.dataset.approval = a.id;
    card.append(el('b', a.tool + ' — ' + a.user + ' (' + a.route + ')'));
    const link = el('a', ' thread'); link.href = '/operator/thread/' + a.thread; card.append(link);
    card.append(el('div', 'Risk: ' + a.risk));
    card.append(el('pre', JSON.stringify(a.args, null, 2)));
    if (a.diff) card.append(el('pre', a.diff));
    if (a.untrusted_sources.length)
      card.append(el('div', 'Untrusted content in context: ' + a.untrusted_sources.join(', '), 'warn'));
    card.append(el('div', Math.round(a.seconds_left) + ' s left'));
    const ok = el('button', 'Approve'); ok.onclick = () => decide(a.id, 'approved');
    const no = el('button', 'Reject'); no.onclick = () => decide(a.id, 'rejected');
    const reason = el('input'); reason.id = 'reason-' + a.id; reason.placeholder = 'reason (sent to the model)';
    card.append(ok, no, reason); box.append(card);
  } }
async function loadAudit(ev) {
  if (ev) ev.preventDefault();
  const q = new URLSearchParams(new FormData($('#audit-form'))).toString();
  const rows = await (await fetch('/operator/api/audit?' + q)).json();
  const body = $('#audit'); body.replaceChildren();
  for (const a of rows) { const tr = el('tr');
    for (const v of [new Date(a.decided_at * 1000).toISOString(),
                     a.user + (a.thread_deleted ? ' (thread deleted)' : ''), a.tool, a.status, a.decided_by,
                     a.reason || '', a.args_digest.slice(0, 12)]) tr.append(el('td', v));
    body.append(tr); } }
async function loadBudgets() {
  const rows = await (await fetch('/operator/api/budgets')).json();
  const body = $('#budgets'); body.replaceChildren();
  for (const b of rows) { const tr = el('tr'); tr.append(el('td', b.user), el('td', b.today_usd));
    const d = el('input'); d.value = b.daily_usd; const m = el('input'); m.value = b.monthly_usd;
    const save = el('button', 'Save'); save.onclick = async () => {
      await post('/operator/api/budgets/' + encodeURIComponent(b.user), {daily_usd: d.value, monthly_usd: m.value});
      loadBudgets(); };
    const td1 = el('td'); td1.append(d); const td2 = el('td'); td2.append(m); const td3 = el('td'); td3.append(save);
    tr.append(td1, td2, td3); body.append(tr); } }
async function loadUsage() {
  const rows = await (await fetch('/operator/api/usage')).json();
  const body = $('#usage'); body.replaceChildren();
  for (const u of rows) { const tr = el('tr');
    for (const v of [u.day, u.user, u.model, u.calls, u.cost_usd]) tr.append(el('td', String(v)));
    body.append(tr); } }
async function loadPurges() {
  const rows = await (await fetch('/operator/api/purges')).json();
  const body = $('#purges'); body.replaceChildren();
  for (const p of rows) { const tr = el('tr');
    for (const v of [new Date(p.at * 1000).toISOString(), p.by, p.older_than_days, p.threads, p.messages,
                     p.approvals, p.tool_calls, p.model_calls_detached]) tr.append(el('td', String(v)));
    body.append(tr); } }
$('#audit-form').addEventListener('submit', loadAudit);
refresh(); loadAudit(); loadBudgets(); loadUsage(); loadPurges();
setInterval(refresh, 1500);
"""


def console(who: str) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Tollgate operator console</title>
<style>{STYLE}</style></head><body>
<header><b>Tollgate — operator console</b><span>signed in as {_cell(who)}</span><a href="/">chat</a></header>
<main>
<h2>Pending approvals</h2><div id="pending"></div>
<h2>Audit log</h2>
<form id="audit-form"><input name="user" placeholder="user"> <input name="tool" placeholder="tool">
<input name="status" placeholder="approved|rejected|expired"> <input name="since" placeholder="YYYY-MM-DD">
<button>Filter</button></form>
<table><thead><tr><th>decided (UTC)</th><th>user</th><th>tool</th><th>decision</th><th>by</th><th>reason</th>
<th>args digest</th></tr></thead><tbody id="audit"></tbody></table>
<h2>Spend per user per day</h2><img src="/operator/usage.svg" alt="spend per user per day">
<table><thead><tr><th>day</th><th>user</th><th>model</th><th>calls</th><th>USD</th></tr></thead>
<tbody id="usage"></tbody></table>
<h2>Budgets</h2>
<table><thead><tr><th>user</th><th>spent today (USD)</th><th>daily limit</th><th>monthly limit</th><th></th>
</tr></thead>
<tbody id="budgets"></tbody></table>
<h2>Purges of deleted threads</h2>
<table><thead><tr><th>at (UTC)</th><th>by</th><th>older than (days)</th><th>threads</th><th>messages</th>
<th>approvals</th><th>tool calls</th><th>model calls kept, unlinked</th></tr></thead>
<tbody id="purges"></tbody></table>
</main><script>{CONSOLE_JS}</script></body></html>"""


INLINE_SCRIPTS = (CONSOLE_JS,)  # allowed by hash in the Content-Security-Policy (ui/security_headers.py)


def _cell(value: object) -> str:
    """An untrusted one-line value in HTML: escaped, nothing hidden or reordered."""
    return escape(reveal_line(str(value)))


def spend_chart(rows: list[SpendRow], width: int = 720, height: int = 240) -> str:
    """A server-rendered stacked bar chart (no chart library, no CDN): USD per day, one colour per user."""
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        per_day[r.day][r.user] += r.cost_nanousd
    days = sorted(per_day)[-14:]
    users = sorted({u for d in days for u in per_day[d]})
    top = max((sum(per_day[d].values()) for d in days), default=0) or 1
    palette = ["#f58ab0", "#7ec8e3", "#ffd166", "#06d6a0", "#b39ddb", "#ef8354"]
    bar_w = min((width - 60) / max(len(days), 1), 60)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 40}">',
             f'<text class="axis" x="4" y="14" fill="#aaa" font-size="11">max ${top / 1e9:.4f}/day</text>']
    for i, day in enumerate(days):
        y: float = height
        for j, user in enumerate(users):
            h = per_day[day].get(user, 0) / top * (height - 30)
            if h <= 0:
                continue
            y -= h
            parts.append(f'<rect x="{50 + i * bar_w:.1f}" y="{y:.1f}" width="{bar_w * 0.8:.1f}" height="{h:.1f}" '
                         f'fill="{palette[j % len(palette)]}"><title>{_cell(user)} {_cell(day)}: '
                         f'${per_day[day][user] / 1e9:.6f}</title></rect>')
        parts.append(f'<text x="{50 + i * bar_w:.1f}" y="{height + 14}" fill="#aaa" font-size="10">'
                     f'{_cell(day[5:])}</text>')
    for j, user in enumerate(users):
        parts.append(f'<text x="{50 + j * 110}" y="{height + 34}" fill="{palette[j % len(palette)]}" '
                     f'font-size="12">■ {_cell(user)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _waterfall(trace: dict[str, list[dict[str, Any]]]) -> str:
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
    for a in trace["approvals"]:
        wait = ((a["decided_at"] or a["requested_at"]) - a["requested_at"]) * 1000
        rows.append(("approval wait " + a["tool"], a["requested_at"], 0.0, wait, f"{a['status']} by {a['decided_by']}"))
    rows.sort(key=lambda r: r[1])
    scale = max((r[2] + r[3] for r in rows if not r[0].startswith("approval")), default=1.0) or 1.0
    out = ["<table><tr><th>step</th><th>ms</th><th class='wide'>waterfall</th><th>detail</th></tr>"]
    for name, _start, first, rest, detail in rows:
        human = name.startswith("approval")
        lead, tail = first / scale * 100, rest / scale * 100
        bar = ("<i>human time, not latency</i>" if human else
               f"<svg width='100%' height='12'><rect width='{lead:.1f}%' height='12' fill='#7ec8e3'/>"
               f"<rect x='{lead:.1f}%' width='{tail:.1f}%' height='12' fill='#f58ab0'/></svg>")
        out.append(f"<tr><td>{_cell(name)}</td><td>{first + rest:,.0f}</td><td>{bar}</td>"
                   f"<td>{_cell(detail)}</td></tr>")
    out.append("</table><p>blue: time to first token · pink: the rest of the call or the tool's run</p>")
    return "".join(out)


def thread(owner: str, thread_id: str, messages: list[StoredMessage], trace: dict[str, list[dict[str, Any]]],
           deleted_at: float | None = None) -> str:
    items = []
    if deleted_at is not None:
        when = datetime.fromtimestamp(deleted_at, tz=UTC).isoformat(timespec="seconds")
        items.append(f"<p class='warn'>Deleted by its owner at {when}: hidden from them, kept for the audit.</p>")
    for m in messages:
        body = json.dumps(m.content, indent=2, ensure_ascii=False)
        flag = " (incomplete)" if m.incomplete else ""
        items.append(f"<div class='card'><b>{_cell(m.role)}{flag}</b><pre>{escape(reveal_block(body))}</pre></div>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Thread {_cell(thread_id)}</title>
<style>{STYLE}</style></head><body><header><b>Thread inspector (read-only)</b><span>{_cell(owner)} ·
{_cell(thread_id)}</span><a href="/operator">console</a></header><main>
<h2>Trace</h2>{_waterfall(trace)}<h2>Messages (as the model sees them)</h2>{"".join(items)}</main></body></html>"""
