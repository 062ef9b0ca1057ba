"""Who may use the operator console: a logged-in user whose role in our store is operator, on every route.

Same login as the chat (chainlit's JWT cookie, already cut off by ui/sessions.py when revoked). The
push stream also refuses requests a browser marks as coming from another site, on top of ui/origin_guard.py
(which answers any foreign Origin header before chainlit sees the request): defence in depth for the one
route that keeps a connection open and sends data without being asked again.
"""

from __future__ import annotations

from typing import Annotated, Any

from chainlit.auth import get_current_user
from fastapi import Depends, HTTPException, Request

from store import users as user_store
from ui import chat
from ui.origin_guard import normalise
from ui.setup import allowed_origins

SAME_SITE_FETCH = ("same-origin", "none")  # Sec-Fetch-Site values of the console's own requests


async def is_operator(name: str) -> bool:
    rt = await chat.runtime()
    found = await user_store.get_user(rt.db, name=name)
    return found is not None and found.is_operator


async def operator(user: Annotated[Any, Depends(get_current_user)]) -> str:
    if user is None:
        raise HTTPException(status_code=401, detail="log in first")
    if not await is_operator(user.identifier):
        raise HTTPException(status_code=403, detail="operators only")
    return str(user.identifier)


Operator = Annotated[str, Depends(operator)]


def require_same_origin(request: Request) -> None:
    """403 unless the request came from this app's own pages (or from no browser page at all)."""
    origin = request.headers.get("origin")
    if origin is not None and normalise(origin) not in {normalise(o) for o in allowed_origins()}:
        raise HTTPException(status_code=403, detail="origin not allowed")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in SAME_SITE_FETCH:
        raise HTTPException(status_code=403, detail="cross-site request refused")
