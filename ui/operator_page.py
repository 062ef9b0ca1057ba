"""The console's HTML: page shells that load the console's own CSS and JS from /operator/static (files in
ui/static/console/, served by this app: no CDN, no inline script, so the CSP stays `script-src 'self'`).
Everything that came from a user, a model or a tool is escaped here or set as textContent in console.js."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from store.values import StoredMessage
from ui.operator_thread import cell, conversation, waterfall

INLINE_SCRIPTS: tuple[str, ...] = ()  # none: the CSP needs no hashes for the console (ui/security_headers.py)
STATIC = "/operator/static"


def _shell(title: str, who: str, body: str, *, scripts: tuple[str, ...] = (), nav: str = "") -> str:
    tags = "".join(f'<script src="{STATIC}/{s}"></script>' for s in scripts)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark">
<title>{cell(title)}</title><link rel="stylesheet" href="{STATIC}/console.css"></head><body>
<header class="topbar"><a class="brand" href="/operator"><span class="logo" aria-hidden="true"></span>Tollgate
<span class="muted">operator console</span></a><nav>{nav}</nav>
<span class="who">signed in as <b>{cell(who)}</b></span><a class="button ghost" href="/">Open the chat</a></header>
{body}{tags}</body></html>"""


NAV = ('<a href="#pending">Pending</a><a href="#spend">Spend</a><a href="#audit">Audit log</a>'
       '<a href="#budgets">Budgets</a><a href="#purges">Purges</a><a href="#mcp">MCP servers</a>')


def console(who: str) -> str:
    body = """<main class="layout">
<section id="pending" class="panel"><div class="panel-head"><h2>Pending approvals</h2>
<span id="live" class="badge" data-state="connecting">connecting…</span></div>
<div id="pending-list" class="cards" aria-live="polite"></div></section>

<section id="spend" class="panel"><div class="panel-head"><h2>Spend</h2>
<form id="spend-form" class="filters"><label>since <input type="date" name="since"></label>
<button class="button">Show</button></form></div>
<p id="spend-empty" class="empty" hidden>No model calls in this period yet.</p>
<div class="charts"><figure><figcaption>Per user</figcaption><div class="chart"><canvas id="chart-users"
role="img" aria-label="spend per user"></canvas></div></figure>
<figure><figcaption>Per day, by user</figcaption><div class="chart"><canvas id="chart-days" role="img"
aria-label="spend per day"></canvas></div></figure></div>
<details><summary>Spend per user, day and model</summary><table><thead><tr><th>day</th><th>user</th><th>model</th>
<th class="num">calls</th><th class="num">cost</th></tr></thead><tbody id="usage"></tbody></table></details></section>

<section id="audit" class="panel"><div class="panel-head"><h2>Audit log</h2></div>
<form id="audit-form" class="filters"><input name="user" placeholder="user" aria-label="user">
<input name="tool" placeholder="tool" aria-label="tool"><select name="status" aria-label="decision">
<option value="">any decision</option><option value="approved">approved</option><option value="rejected">rejected
</option><option value="expired">expired</option></select><label>from <input type="date" name="since"></label>
<label>to <input type="date" name="until"></label><label>per page <select name="limit"><option>10</option>
<option selected>25</option><option>50</option><option>100</option></select></label>
<button class="button">Filter</button></form>
<p id="audit-error" class="error" hidden></p>
<table><thead><tr><th>decided</th><th>user</th><th>tool</th><th>decision</th><th>by</th><th>reason</th>
<th>arguments</th><th></th></tr></thead><tbody id="audit-rows"></tbody></table>
<div class="pager"><button id="audit-newer" class="button ghost" disabled>Newer</button>
<span id="audit-page" class="muted"></span><button id="audit-older" class="button ghost" disabled>Older</button>
</div></section>

<section id="budgets" class="panel"><div class="panel-head"><h2>Budgets</h2></div>
<table><thead><tr><th>user</th><th class="num">spent today</th><th>daily limit (USD)</th><th>monthly limit (USD)</th>
<th></th></tr></thead><tbody id="budget-rows"></tbody></table></section>

<section id="purges" class="panel"><div class="panel-head"><h2>Purges of deleted threads</h2></div>
<table><thead><tr><th>at</th><th>by</th><th class="num">older than (days)</th><th class="num">threads</th>
<th class="num">messages</th><th class="num">approvals</th><th class="num">tool calls</th>
<th class="num">model calls kept, unlinked</th></tr></thead><tbody id="purge-rows"></tbody></table></section>

<section id="mcp" class="panel"><div class="panel-head"><h2>MCP servers</h2>
<button id="mcp-refresh" class="button ghost">Refresh</button></div>
<p id="mcp-summary" class="muted"></p><p id="mcp-error" class="error" hidden></p>
<table><thead><tr><th>server</th><th>transport</th><th>state</th><th class="num">tools</th>
<th class="num">user sessions</th><th>last error</th></tr></thead><tbody id="mcp-rows"></tbody></table></section>
</main>"""
    return _shell("Tollgate · operator console", who, body, scripts=("vendor/chart.umd.min.js", "console.js"),
                  nav=NAV)


def thread(who: str, owner: str, thread_id: str, messages: list[StoredMessage],
           trace: dict[str, list[dict[str, Any]]], deleted_at: float | None = None) -> str:
    note = ""
    if deleted_at is not None:
        when = datetime.fromtimestamp(deleted_at, tz=UTC).isoformat(timespec="seconds")
        note = f"<p class='warn'>Deleted by its owner at {when}: hidden from them, kept for the audit.</p>"
    body = f"""<main class="layout narrow"><section class="panel"><div class="panel-head"><h2>Thread
<span class="muted">{cell(thread_id)}</span></h2><span class="badge">read-only</span></div>
<p>Owner <b>{cell(owner)}</b> · {len(messages)} messages</p>{note}</section>
<section class="panel"><div class="panel-head"><h2>Conversation</h2><span class="muted">as the model saw it</span>
</div><div class="thread">{conversation(messages, trace["tool_calls"])}</div></section>
<section class="panel"><div class="panel-head"><h2>Trace</h2></div>{waterfall(trace)}</section></main>"""
    return _shell(f"Tollgate · thread {thread_id}", who, body)
