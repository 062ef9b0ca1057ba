"""fetch_url: read a public web page as text, with SSRF protection (see netguard.py).

Pinning: each hop resolves the host once (netguard.pinned_address), checks every address, then
sends the request to that IP literal with the original ``Host`` header and, for https, the original
name as SNI (httpcore's ``sni_hostname`` request extension), so certificates are still verified
against the hostname. Limits: only the first resolved address is tried; proxies from the
environment are ignored on purpose (a proxy would resolve the name itself); a fresh client per hop
means no connection or cookie is shared between redirect targets.
"""

from __future__ import annotations

import asyncio
import codecs
from typing import Annotated

import httpx
from pydantic import Field

from tools.errors import ToolError
from tools.html_text import html_to_text
from tools.netguard import FetchPolicy, parse_url, pinned_address
from tools.registry import ToolContext, tool

__all__ = ["FetchPolicy", "fetch_text", "fetch_url"]

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-ndjson")
_HEADERS = {
    "User-Agent": "Tollgate/0.1 (fetch_url)",
    "Accept": "text/html, text/plain;q=0.9, */*;q=0.5",
    # Ask for an uncompressed body so max_bytes bounds memory. A server may compress anyway; httpx
    # then inflates chunk by chunk, so a single chunk can briefly exceed max_bytes in memory.
    "Accept-Encoding": "identity",
}


def _media_type(content_type: str) -> tuple[str, str | None]:
    mime, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("\"'") or None
    return mime.strip().lower(), charset


def _is_text(mime: str) -> bool:
    return (
        mime == ""
        or mime.startswith("text/")
        or mime in _TEXT_TYPES
        or mime in _HTML_TYPES
        or mime.endswith(("+json", "+xml"))
    )


def _decode(body: bytes, charset: str | None) -> str:
    try:
        codec = codecs.lookup(charset or "utf-8").name
    except LookupError:
        codec = "utf-8"
    return body.decode(codec, errors="replace")


async def _get_once(url: httpx.URL, policy: FetchPolicy) -> tuple[httpx.Response, bytes, bool]:
    """One GET to the pinned address: (closed response, body capped at max_bytes, truncated)."""
    address = await pinned_address(url, policy)
    headers = dict(_HEADERS)
    headers["Host"] = url.netloc.decode("ascii")
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    async with (
        httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=policy.timeout_s) as client,
        client.stream("GET", url.copy_with(host=address), headers=headers, extensions=extensions) as response,
    ):
        if response.is_redirect or response.status_code >= 400:
            return response, b"", False
        mime, _ = _media_type(response.headers.get("content-type", ""))
        if not _is_text(mime):
            raise ToolError(f"refusing binary content ({mime}) from {url}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > policy.max_bytes:
                break  # stop reading; leaving the block closes the connection
        return response, b"".join(chunks)[: policy.max_bytes], size > policy.max_bytes


async def fetch_text(raw_url: str, policy: FetchPolicy) -> str:
    """Fetch raw_url under policy, following redirects by hand so every hop is re-checked."""
    url = parse_url(raw_url, policy)
    try:
        async with asyncio.timeout(policy.timeout_s):
            for _ in range(policy.max_redirects + 1):
                response, body, truncated = await _get_once(url, policy)
                if not response.is_redirect:
                    break
                location = response.headers.get("location", "")
                if not location:
                    raise ToolError(f"redirect without a Location from {url}")
                url = parse_url(str(url.join(location)), policy)
            else:
                raise ToolError(f"too many redirects (limit {policy.max_redirects})")
    except TimeoutError:
        raise ToolError(f"timed out after {policy.timeout_s:g} s fetching {url}") from None
    except httpx.InvalidURL:
        raise ToolError(f"invalid URL: {url}") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"could not fetch {url}: {type(exc).__name__}") from None
    if response.status_code >= 400:
        raise ToolError(f"HTTP {response.status_code} {response.reason_phrase} from {url}")
    mime, charset = _media_type(response.headers.get("content-type", ""))
    text = _decode(body, charset)
    if mime == "" and "\x00" in text:
        raise ToolError(f"refusing binary content from {url}")
    if mime in _HTML_TYPES:
        text = html_to_text(text, str(url))
    header = f"Fetched {url} ({mime or 'unknown type'})"
    if truncated:
        text += f"\n[truncated: the page is larger than {policy.max_bytes} bytes]"
    return f"{header}\n\n{text}"


@tool(
    egress=True,
    risk="Sends a request off this machine; anything in the address (host, path, query) goes with it.",
)
async def fetch_url(
    ctx: ToolContext,
    url: Annotated[str, Field(description="Full http:// or https:// address of a public web page.", max_length=2048)],
) -> str:
    """Fetch a public web page and return its readable text. Only public http(s) addresses work."""
    return await fetch_text(url, ctx.fetch_policy)
