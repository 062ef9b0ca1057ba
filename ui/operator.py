"""The operator console at /operator, served by chainlit's own FastAPI app (no second server).

Same login as the chat (chainlit's JWT cookie); every route checks the role in our store, so a
user who is not an operator gets 403 on the page and on every API it calls.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from chainlit.auth import get_current_user
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from agent.pricing import from_nano, to_nano
from store import approvals as approval_store
from store import audit, records
from store import threads as thread_store
from store import usage as usage_store
from store import users as user_store
from store.threads import NotFound
from store.values import Approval
from ui import cards, chat, live, operator_page

router = APIRouter(prefix="/operator")


async def operator(user: Annotated[Any, Depends(get_current_user)]) -> str:
    if user is None:
        raise HTTPException(status_code=401, detail="log in first")
    rt = await chat.runtime()
    found = await user_store.get_user(rt.db, name=user.identifier)
    if found is None or not found.is_operator:
        raise HTTPException(status_code=403, detail="operators only")
    return found.name


Operator = Annotated[str, Depends(operator)]


def _approval_json(a: Approval) -> dict[str, Any]:
    return {"id": a.id, "user": a.owner, "thread": a.thread_id, "tool": a.tool, "args": a.args, "risk": a.risk,
            "untrusted_sources": list(a.untrusted_sources), "route": a.route, "status": a.status,
            "requested_at": a.requested_at, "expires_at": a.expires_at,
            "seconds_left": max(0, a.expires_at - time.time()),
            "decided_at": a.decided_at, "decided_by": a.decided_by, "reason": a.reason,
            "thread_deleted": a.thread_deleted}


@router.get("", response_class=HTMLResponse)
async def page(who: Operator) -> str:
    return operator_page.console(who)


@router.get("/api/pending")
async def pending(who: Operator) -> list[dict[str, Any]]:
    rt = await chat.runtime()
    items = []
    for a in await approval_store.pending_approvals(rt.db, owner=None):
        item = _approval_json(a)
        if a.tool == "write_file":  # what will change, not just what was asked
            item["diff"] = cards.write_diff(rt.agent.workspace_for(a.owner), a.args)
        items.append(item)
    return items


class DecisionIn(BaseModel):
    decision: str = Field(pattern="^(approved|rejected)$")
    reason: str | None = Field(default=None, max_length=500)


@router.post("/api/approvals/{approval_id}")
async def decide(approval_id: str, body: DecisionIn, who: Operator) -> dict[str, Any]:
    rt = await chat.runtime()
    try:
        a = await approval_store.decide(rt.db, approval_id=approval_id, decision=body.decision, decided_by=who,
                                        via="console", reason=body.reason, as_operator=True)
    except NotFound:
        raise HTTPException(status_code=404, detail="no such approval") from None
    await live.continue_thread(rt, owner=a.owner, thread_id=a.thread_id)
    return _approval_json(a)


@router.get("/api/audit")
async def audit_log(who: Operator, user: str | None = None, tool: str | None = None, status: str | None = None,
                    since: str | None = None) -> list[dict[str, Any]]:
    rt = await chat.runtime()
    since_ts = datetime.fromisoformat(since).replace(tzinfo=UTC).timestamp() if since else None
    rows = await audit.decisions(rt.db, user=user or None, tool=tool or None, status=status or None, since=since_ts)
    return [{**_approval_json(a), "args_digest": a.args_digest} for a in rows]


@router.get("/api/usage")
async def usage(who: Operator, since: str | None = None) -> list[dict[str, Any]]:
    rt = await chat.runtime()
    rows = await audit.spend_by_user_day_model(rt.db, since_day=since or None)
    return [{"user": r.user, "day": r.day, "model": r.model, "calls": r.calls,
             "cost_usd": str(from_nano(r.cost_nanousd))} for r in rows]


@router.get("/usage.svg")
async def usage_chart(who: Operator, since: str | None = None) -> Response:
    rt = await chat.runtime()
    rows = await audit.spend_by_user_day_model(rt.db, since_day=since or None)
    return Response(operator_page.spend_chart(rows), media_type="image/svg+xml")


@router.get("/api/budgets")
async def budgets(who: Operator) -> list[dict[str, Any]]:
    rt = await chat.runtime()
    s = rt.settings
    out = []
    for u in await user_store.list_users(rt.db):
        daily, monthly = await usage_store.get_budget(rt.db, user=u.name)
        out.append({"user": u.name, "role": u.role,
                    "daily_usd": str(from_nano(daily if daily is not None else to_nano(s.user_daily_usd))),
                    "monthly_usd": str(from_nano(monthly if monthly is not None else to_nano(s.user_monthly_usd))),
                    "today_usd": str(from_nano(await usage_store.spent(rt.db, scope="user_day", user=u.name)))})
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
    return operator_page.thread(owner, thread_id, messages, trace, deleted_at)


@router.get("/api/thread/{thread_id}/trace")
async def thread_trace(thread_id: str, who: Operator) -> dict[str, Any]:
    rt = await chat.runtime()
    return json.loads(json.dumps(await audit.thread_trace(rt.db, thread_id=thread_id), default=str))


@router.get("/api/purges")
async def purges(who: Operator) -> list[dict[str, Any]]:
    """What retention removed, and when: deleted threads do not vanish from the audit without a trace."""
    rt = await chat.runtime()
    return [p.__dict__ for p in await records.purges(rt.db)]


def install(app: FastAPI) -> None:
    """Put the console's routes before chainlit's catch-all page route, which would shadow them."""
    for route in reversed(router.routes):
        app.router.routes.insert(0, route)
