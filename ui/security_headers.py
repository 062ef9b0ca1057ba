"""What the browser may load: a strict Content-Security-Policy and two hardening headers on every HTTP
response the app serves (the chat SPA, its assets, the login page, the operator console and its APIs).

The policy allows only this origin: scripts from it plus the few inline scripts we know by hash
(chainlit's index and our operator console), images from it or `data:`/`blob:`, fetch and socket
connections to it. A markdown image that slipped past the sanitiser (ui/safe_markdown.py) is still
never fetched from elsewhere. Styles allow 'unsafe-inline' because chainlit's UI libraries inject
<style> elements at run time; a style cannot load anything off-origin under this policy.

Chainlit's index.html links Google Fonts and KaTeX's CSS from CDNs: the page would ask another origin
on every load. We drop those links (the UI falls back to system fonts; LaTeX is off in config).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)
# <link> tags to another origin (preconnect, font and KaTeX stylesheets) in chainlit's index.html.
_OFF_ORIGIN_LINK = re.compile(r"<link\b[^>]*\bhref=\"(?:https?:)?//[^\"]*\"[^>]*/?>\s*", re.I)


def script_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def inline_scripts(html: str) -> list[str]:
    return _INLINE_SCRIPT.findall(html)


def without_off_origin_links(html: str) -> str:
    return _OFF_ORIGIN_LINK.sub("", html)


def policy(script_hashes: Iterable[str] = ()) -> str:
    hashes = " ".join(sorted(set(script_hashes)))
    directives = {
        "default-src": "'self'",
        "script-src": f"'self' {hashes}".strip(),
        "style-src": "'self' 'unsafe-inline'",
        "img-src": "'self' data: blob:",
        "font-src": "'self' data:",
        "media-src": "'self' blob:",
        "connect-src": "'self'",  # CSP3 'self' covers ws:/wss: to the same host and port
        "worker-src": "'self' blob:",
        "frame-src": "'none'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "object-src": "'none'",
    }
    return "; ".join(f"{k} {v}" for k, v in directives.items())


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers to every HTTP response start; websockets pass through."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = [(b"content-security-policy", csp.encode()), (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                ours = {name for name, _ in self.headers}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in ours]
                message["headers"] = kept + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: Any, *, extra_inline_scripts: Iterable[str] = ()) -> str:
    """Serve chainlit's index without CDN links, pin raw HTML in markdown off, and add the headers to
    every response of `app` (Tollgate's app around chainlit, ui/web.py; call before it serves). Returns the policy."""
    from chainlit.config import config

    from ui import chainlit_compat

    config.features.unsafe_allow_html = False  # raw <img>/<svg> in markdown stays text, whatever the toml says
    config.features.user_message_markdown = False  # the user's own text is shown as typed (no image in it)
    template = chainlit_compat.serve_index_through(without_off_origin_links)
    scripts = inline_scripts(template("")) + list(extra_inline_scripts)
    csp = policy(script_hash(s) for s in scripts)
    app.add_middleware(SecurityHeaders, csp=csp)
    return csp
