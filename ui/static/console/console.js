// The operator console. Pending approvals arrive pushed over Server-Sent Events (/operator/api/pending/stream);
// nothing here polls. Every value from a user, a model or a tool goes into the page as textContent, with
// control and bidi/invisible characters shown as <U+...> (like ui/safe_text.py), never as HTML.
'use strict';
const $ = (s) => document.querySelector(s);
const HIDDEN = new RegExp('[\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f\\u061c\\u180e\\u200b-\\u200f'
  + '\\u202a-\\u202e\\u2028\\u2029\\u2060\\u2066-\\u2069\\ufeff]', 'g');
const hex = (c) => c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
function shown(text, keepLines) {
  const s = String(text).replace(HIDDEN, (c) => '<U+' + hex(c) + '>');
  return keepLines ? s : s.replace(/\n/g, '\u240a').replace(/\t/g, '\u2409');
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = shown(text, tag === 'pre');
  if (cls) e.className = cls;
  return e;
}
const utc = (ts) => ts ? new Date(ts * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : '';
// Money as the server formats it (agent/pricing.fmt_usd): 4 decimals below $1, cents above, half up; exact
// on integer nano-USD.
function fmtUsd(nano) {
  const places = nano < 1e9 ? 4 : 2;
  const unit = 10 ** (9 - places);
  const units = Math.floor((nano + unit / 2) / unit);
  const whole = Math.floor(units / 10 ** places);
  return '$' + whole + '.' + String(units - whole * 10 ** places).padStart(places, '0');
}
async function getJson(url) {
  const r = await fetch(url, {credentials: 'same-origin'});
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new Error((body && body.detail) || ('HTTP ' + r.status));
  return body;
}
async function post(url, body) {
  const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                              body: JSON.stringify(body), credentials: 'same-origin'});
  if (!r.ok) {
    let d = '';
    try { d = (await r.json()).detail; } catch (e) { d = ''; }
    alert('Failed: ' + r.status + (d ? ' — ' + d : ''));
  }
  return r;
}

// ---- pending approvals, pushed -------------------------------------------------------------------------
function renderPending(items) {
  const box = $('#pending-list');
  box.replaceChildren();
  if (!items.length) box.append(el('p', 'Nothing waiting for a decision.', 'empty'));
  const now = Date.now();
  for (const a of items) {
    const card = el('article', undefined, 'card');
    card.dataset.approval = a.id;
    const head = el('div', undefined, 'card-head');
    head.append(el('b', a.tool + ' — ' + a.user), el('span', a.route === 'operator' ? 'needs an operator'
      : 'the user decides', 'badge'));
    card.append(head);
    const meta = el('div', undefined, 'muted');
    const link = el('a', 'Open the thread (read-only)');
    link.href = '/operator/thread/' + encodeURIComponent(a.thread);
    meta.append(link);
    card.append(meta, el('div', 'Risk: ' + a.risk));
    card.append(el('pre', JSON.stringify(a.args, null, 2)));
    if (a.diff) card.append(el('pre', a.diff));
    if (a.untrusted_sources.length)
      card.append(el('div', 'Untrusted content in context: ' + a.untrusted_sources.join(', '), 'warn'));
    const left = el('div', '', 'muted');
    left.dataset.deadline = String(now + a.seconds_left * 1000);
    card.append(left);
    const actions = el('div', undefined, 'actions');
    const ok = el('button', 'Approve', 'primary');
    const no = el('button', 'Reject');
    const reason = el('input');
    reason.placeholder = 'reason (sent to the model)';
    reason.maxLength = 500;
    ok.onclick = () => decide(a.id, 'approved', null, card);
    no.onclick = () => decide(a.id, 'rejected', reason.value || null, card);
    actions.append(ok, no, reason);
    card.append(actions);
    box.append(card);
  }
  tick();
}
async function decide(id, decision, reason, card) {
  for (const b of card.querySelectorAll('button')) b.disabled = true;
  const r = await post('/operator/api/approvals/' + encodeURIComponent(id), {decision, reason});
  if (!r.ok) for (const b of card.querySelectorAll('button')) b.disabled = false;
  // No reload: the stream sends the new list once the decision is stored.
}
function tick() {
  for (const e of document.querySelectorAll('[data-deadline]')) {
    const s = Math.max(0, Math.round((Number(e.dataset.deadline) - Date.now()) / 1000));
    e.textContent = s ? s + ' s left to decide' : 'expired';
  }
}
function setLive(state, text) { const b = $('#live'); b.dataset.state = state; b.textContent = text; }
function connect() {
  const source = new EventSource('/operator/api/pending/stream');
  source.addEventListener('open', () => setLive('live', 'live'));
  source.addEventListener('pending', (ev) => { setLive('live', 'live'); renderPending(JSON.parse(ev.data)); });
  source.addEventListener('denied', () => { source.close(); setLive('lost', 'signed out'); });
  source.addEventListener('error', () => {
    // EventSource reconnects by itself unless the server refused the request (then readyState is CLOSED).
    setLive('lost', source.readyState === EventSource.CLOSED ? 'disconnected — reload the page' : 'reconnecting…');
  });
}

// ---- spend charts -----------------------------------------------------------------------------------
const charts = {};
let usageRows = [];
function cssColor(name, alpha) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim().split(/\s+/);
  return 'hsla(' + v[0] + ', ' + v[1] + ', ' + v[2] + ', ' + (alpha === undefined ? 1 : alpha) + ')';
}
const palette = () => [1, 2, 3, 4, 5, 6].map((i) => cssColor('--chart-' + i));
function drawCharts() {
  if (typeof Chart === 'undefined') return;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = cssColor('--muted-foreground');
  Chart.defaults.borderColor = cssColor('--border');
  const users = [...new Set(usageRows.map((r) => r.user))].sort();
  const days = [...new Set(usageRows.map((r) => r.day))].sort();
  const perUser = new Map(users.map((u) => [u, 0]));
  const perDay = new Map(users.map((u) => [u, new Map(days.map((d) => [d, 0]))]));
  for (const r of usageRows) {
    perUser.set(r.user, perUser.get(r.user) + r.cost_nanousd);
    perDay.get(r.user).set(r.day, perDay.get(r.user).get(r.day) + r.cost_nanousd);
  }
  const colors = palette();
  const money = {callbacks: {label: (c) => shown(c.dataset.label || c.label) + ': ' + fmtUsd(c.raw)}};
  // Axis ticks are a scale, not amounts: plain decimals; the tooltips carry the exact, formatted amounts.
  const axis = {ticks: {callback: (v) => '$' + (v / 1e9).toLocaleString('en-US', {maximumFractionDigits: 6})},
                beginAtZero: true};
  const common = {responsive: true, maintainAspectRatio: false, animation: false};
  for (const c of Object.values(charts)) c.destroy();
  $('#spend-empty').hidden = usageRows.length > 0;
  charts.users = new Chart($('#chart-users'), {type: 'bar', data: {labels: users.map((u) => shown(u)),
    datasets: [{label: 'spend', data: users.map((u) => perUser.get(u)),
                backgroundColor: users.map((_, i) => colors[i % colors.length]), borderRadius: 6,
                maxBarThickness: 36}]},
    options: {...common, indexAxis: 'y', plugins: {legend: {display: false}, tooltip: money},
              scales: {x: axis}}});
  charts.days = new Chart($('#chart-days'), {type: 'bar', data: {labels: days,
    datasets: users.map((u, i) => ({label: shown(u), data: days.map((d) => perDay.get(u).get(d)),
                                    backgroundColor: colors[i % colors.length], borderRadius: 4,
                                    maxBarThickness: 56}))},
    options: {...common, plugins: {tooltip: money}, scales: {x: {stacked: true}, y: {...axis, stacked: true}}}});
  document.body.dataset.charts = String(usageRows.length);  // observable for tests: drawn, from how many rows
}
async function loadUsage(ev) {
  if (ev) ev.preventDefault();
  const since = new FormData($('#spend-form')).get('since');
  usageRows = await getJson('/operator/api/usage' + (since ? '?since=' + encodeURIComponent(since) : ''));
  const body = $('#usage');
  body.replaceChildren();
  for (const u of usageRows) {
    const tr = el('tr');
    tr.append(el('td', u.day), el('td', u.user), el('td', u.model), el('td', u.calls, 'num'),
              el('td', u.cost, 'num'));
    body.append(tr);
  }
  drawCharts();
}

// ---- audit log, paged on the server (keyset: `next` is the cursor of the following, older page) --------
const audit = {cursors: [null], next: null};
async function loadAudit(page) {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData($('#audit-form'))) if (v) q.set(k, v);
  const cursor = audit.cursors[page];
  if (cursor) q.set('after', cursor);
  const err = $('#audit-error');
  let found;
  try { found = await getJson('/operator/api/audit?' + q.toString()); } catch (e) {
    err.hidden = false; err.textContent = shown(e.message); return;
  }
  err.hidden = true;
  audit.page = page;
  audit.cursors.length = page + 1;
  if (found.next) audit.cursors.push(found.next);
  const body = $('#audit-rows');
  body.replaceChildren();
  if (!found.rows.length) {
    const tr = el('tr'); const td = el('td', 'No decisions match.', 'empty'); td.colSpan = 8; tr.append(td);
    body.append(tr);
  }
  for (const a of found.rows) {
    const tr = el('tr');
    tr.dataset.audit = a.id;
    const link = el('a', 'thread');
    link.href = '/operator/thread/' + encodeURIComponent(a.thread);
    const linkCell = el('td'); linkCell.append(link);
    const args = el('td'); args.append(el('pre', JSON.stringify(a.args, null, 2)));
    tr.append(el('td', utc(a.decided_at)), el('td', a.user + (a.thread_deleted ? ' (thread deleted)' : '')),
              el('td', a.tool), el('td', a.status), el('td', (a.decided_by || '') + (a.decided_via ? ' · '
              + a.decided_via : '')), el('td', a.reason || ''), args, linkCell);
    body.append(tr);
  }
  $('#audit-page').textContent = 'page ' + (page + 1);
  $('#audit-newer').disabled = page === 0;
  $('#audit-older').disabled = !found.next;
}

// ---- budgets and purges ------------------------------------------------------------------------------
async function loadBudgets() {
  const rows = await getJson('/operator/api/budgets');
  const body = $('#budget-rows');
  body.replaceChildren();
  for (const b of rows) {
    const tr = el('tr');
    const d = el('input'); d.value = b.daily_usd; d.setAttribute('aria-label', 'daily limit of ' + b.user);
    const m = el('input'); m.value = b.monthly_usd; m.setAttribute('aria-label', 'monthly limit of ' + b.user);
    const save = el('button', 'Save');
    save.onclick = async () => {
      await post('/operator/api/budgets/' + encodeURIComponent(b.user), {daily_usd: d.value, monthly_usd: m.value});
      loadBudgets();
    };
    const cells = [d, m, save].map((x) => { const td = el('td'); td.append(x); return td; });
    tr.append(el('td', b.user), el('td', b.today, 'num'), ...cells);
    body.append(tr);
  }
}
async function loadPurges() {
  const rows = await getJson('/operator/api/purges');
  const body = $('#purge-rows');
  body.replaceChildren();
  for (const p of rows) {
    const tr = el('tr');
    tr.append(el('td', utc(p.at)), el('td', p.by));
    for (const v of [p.older_than_days, p.threads, p.messages, p.approvals, p.tool_calls, p.model_calls_detached])
      tr.append(el('td', v, 'num'));
    body.append(tr);
  }
}
// ---- MCP servers (loaded with the page; the Refresh button asks again) ---------------------------------
async function loadMcp() {
  const found = await getJson('/operator/api/mcp');
  const err = $('#mcp-error');
  err.hidden = !found.config_error;
  err.textContent = found.config_error ? shown('MCP config not used: ' + found.config_error) : '';
  $('#mcp-summary').textContent = shown((found.config ? 'config ' + found.config : 'no TOLLGATE_MCP_CONFIG')
    + ' · users\' own servers ' + (found.user_servers.enabled ? 'on (' + found.user_servers.connected
    + ' connected)' : 'off'));
  const body = $('#mcp-rows');
  body.replaceChildren();
  for (const s of found.servers) {
    const tr = el('tr');
    const state = el('td', s.state + (s.next_attempt_s !== null ? ' (next try in ' + s.next_attempt_s + ' s)' : ''));
    state.dataset.state = s.state;
    tr.append(el('td', s.name), el('td', s.transport), state, el('td', s.tools, 'num'), el('td', s.sessions, 'num'),
      el('td', s.last_error));
    body.append(tr);
  }
}

$('#mcp-refresh').addEventListener('click', loadMcp);
$('#audit-form').addEventListener('submit', (ev) => { ev.preventDefault(); audit.cursors = [null]; loadAudit(0); });
$('#audit-older').addEventListener('click', () => loadAudit(audit.page + 1));
$('#audit-newer').addEventListener('click', () => loadAudit(Math.max(0, audit.page - 1)));
$('#spend-form').addEventListener('submit', loadUsage);
window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', drawCharts);
setInterval(tick, 1000);  // the countdown on the cards: local time only, no request
connect();
loadAudit(0); loadUsage(); loadBudgets(); loadPurges(); loadMcp();
