"""The operator console at /operator, served by Tollgate's app next to the chat it mounts (ui/web.py).

Same login as the chat (chainlit's JWT cookie); every route checks the role in our store, so a
user who is not an operator gets 403 on the page and on every API it calls.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from agent.approvals import Approved, Decision, Denied
from agent.pricing import fmt_usd, from_nano, to_nano
from store import audit, records
from store import threads as thread_store
from store import usage as usage_store
from store import users as user_store
from store.threads import NotFound
from ui import chat, operator_page, operator_static, operator_stream, user_mcp
from ui.operator_auth import Operator
from ui.operator_feed import approval_json

router = APIRouter(prefix="/operator")
router.include_router(operator_static.router)
router.include_router(operator_stream.router)


@router.get("", response_class=HTMLResponse)
async def page(who: Operator) -> str:
    return operator_page.console(who)


class DecisionIn(BaseModel):
    decision: str = Field(pattern="^(approved|rejected)$")
    reason: str | None = Field(default=None, max_length=500)


@router.post("/api/approvals/{approval_id}")
async def decide(approval_id: str, body: DecisionIn, who: Operator) -> dict[str, Any]:
    rt = await chat.runtime()
    verdict: Decision = Approved() if body.decision == "approved" else Denied(body.reason or "")
    try:  # recorded, and the thread woken where its chat watches it (agent/decide.py)
        outcome = await rt.agent.decide(approval_id=approval_id, decision=verdict, by=who, how="console",
                                        reason=body.reason)
    except NotFound:
        raise HTTPException(status_code=404, detail="no such approval") from None
    return approval_json(outcome.approval)


def _day(field: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(status_code=400, detail=f"{field}: give a day as YYYY-MM-DD") from None


def _day_start(d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


@router.get("/api/audit")
async def audit_log(who: Operator, user: str | None = None, tool: str | None = None, status: str | None = None,
                    since: str | None = None, until: str | None = None, after: str | None = None,
                    limit: int = 50) -> dict[str, Any]:
    """Decisions newest first, `limit` per page; `next` is the `after` of the next (older) page.
    Days are UTC and both ends are included."""
    rt = await chat.runtime()
    first, last = _day("since", since), _day("until", until)
    where = audit.AuditFilter(user=user or None, tool=tool or None, status=status or None,
                              since=_day_start(first) if first else None,
                              until=_day_start(last + timedelta(days=1)) if last else None)
    try:
        found = await audit.decisions_page(rt.db, where=where, after=after or None, limit=limit)
    except ValueError as e:
        raise HTTPException(status_code=400, detail=str(e)) from None
    return {"rows": [{**approval_json(a), "args_digest": a.args_digest, "decided_via": a.decided_via}
                     for a in found.rows], "next": found.next_cursor}


@router.get("/api/usage")
async def usage(who: Operator, since: str | None = None) -> list[dict[str, Any]]:
    """Spend per user, day and model; money exact (nano-USD and its decimal text) plus the display form."""
    rt = await chat.runtime()
    first = _day("since", since)
    rows = await audit.spend_by_user_day_model(rt.db, since_day=first.isoformat() if first else None)
    return [{"user": r.user, "day": r.day, "model": r.model, "calls": r.calls, "cost_nanousd": r.cost_nanousd,
             "cost_usd": str(from_nano(r.cost_nanousd)), "cost": fmt_usd(r.cost_nanousd)} for r in rows]


@router.get("/api/budgets")
async def budgets(who: Operator) -> list[dict[str, Any]]:
    rt = await chat.runtime()
    s = rt.settings
    out = []
    for u in await user_store.list_users(rt.db):
        daily, monthly = await usage_store.get_budget(rt.db, user=u.name)
        today = await usage_store.spent(rt.db, scope="user_day", user=u.name)
        out.append({"user": u.name, "role": u.role,
                    "daily_usd": str(from_nano(daily if daily is not None else to_nano(s.user_daily_usd))),
                    "monthly_usd": str(from_nano(monthly if monthly is not None else to_nano(s.user_monthly_usd))),
                    "today_usd": str(from_nano(today)), "today": fmt_usd(today)})
    return out


MAX_BUDGET_USD = Decimal(1_000_000)


class BudgetIn(BaseModel):
    # Any JSON value: validated here so every bad value gets a 400 that names the field, not a 422 or a 500.
    daily_usd: Any = None
    monthly_usd: Any = None


def budget_amount(field: str, value: Any) -> Decimal:
    """A budget in USD: a finite number from 0 to MAX_BUDGET_USD, as text or a JSON number (not a bool)."""
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        raise HTTPException(status_code=400, detail=f"{field}: give an amount in USD, e.g. \"1.50\"")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise HTTPException(status_code=400, detail=f"{field}: not a number of USD: {str(value)[:40]!r}") from None
    if not amount.is_finite():
        raise HTTPException(status_code=400, detail=f"{field}: must be a finite amount, not {amount}")
    if amount < 0 or amount > MAX_BUDGET_USD:
        raise HTTPException(status_code=400, detail=f"{field}: must be from 0 to {MAX_BUDGET_USD:,} USD")
    return amount


@router.post("/api/budgets/{name}")
async def set_budget(name: str, body: BudgetIn, who: Operator) -> dict[str, str]:
    rt = await chat.runtime()
    daily, monthly = budget_amount("daily_usd", body.daily_usd), budget_amount("monthly_usd", body.monthly_usd)
    try:
        await usage_store.set_budget(rt.db, user=name, daily_nanousd=to_nano(daily), monthly_nanousd=to_nano(monthly))
    except LookupError:
        raise HTTPException(status_code=404, detail="no such user") from None
    return {"user": name, "daily_usd": str(daily), "monthly_usd": str(monthly)}


@router.get("/thread/{thread_id}", response_class=HTMLResponse)
async def thread_view(thread_id: str, who: Operator) -> str:
    rt = await chat.runtime()
    found = await thread_store.owner_and_deletion(rt.db, thread_id=thread_id)  # deleted threads too: the audit
    if found is None:
        raise HTTPException(status_code=404, detail="no such thread")
    owner, deleted_at = found
    messages = await thread_store.load_messages(rt.db, owner=owner, thread_id=thread_id, include_deleted=True)
    trace = await audit.thread_trace(rt.db, thread_id=thread_id)
    return operator_page.thread(who, owner, thread_id, messages, trace, deleted_at)


@router.get("/api/thread/{thread_id}/trace")
async def thread_trace(thread_id: str, who: Operator) -> dict[str, Any]:
    rt = await chat.runtime()
    trace: dict[str, Any] = json.loads(json.dumps(await audit.thread_trace(rt.db, thread_id=thread_id), default=str))
    return trace


@router.get("/api/purges")
async def purges(who: Operator) -> list[dict[str, Any]]:
    """What retention removed, and when: deleted threads do not vanish from the audit without a trace."""
    rt = await chat.runtime()
    return [p.__dict__ for p in await records.purges(rt.db)]


@router.get("/api/mcp")
async def mcp_status(who: Operator) -> dict[str, Any]:
    """The operator's MCP servers (TOLLGATE_MCP_CONFIG): state, tools, last error; and users' own servers."""
    rt = await chat.runtime()
    servers = rt.mcp.status() if rt.mcp is not None else []
    return {"config": os.environ.get("TOLLGATE_MCP_CONFIG") or None,
            "config_error": (rt.mcp.config_error if rt.mcp is not None else "") or None,
            "servers": [dataclasses.asdict(s) for s in servers],
            "user_servers": {"enabled": user_mcp.enabled(),
                             "connected": rt.user_mcp.connected if rt.user_mcp is not None else 0}}

