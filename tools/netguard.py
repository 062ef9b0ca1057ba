"""SSRF guard for fetch_url: which URLs and addresses may be fetched, and the address to connect to.

The check is done on the addresses the host actually resolves to (so decimal, octal, hex and short
IPv4 forms such as ``2130706433`` or ``127.1`` are caught after the C resolver expands them), and
fetch.py then connects to exactly the address checked here instead of letting httpx resolve the name
again, which closes the DNS-rebinding gap between check and connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from functools import cached_property

import httpx

from tools.errors import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")

# Explicit list on top of ``is_global``: the stdlib's tables changed across 3.11 patch releases
# and ``is_global`` is True for multicast, so do not depend on either alone.
_BLOCKED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchPolicy:
    """What fetch_url may reach. Nothing non-public is reachable unless listed in allow_addresses."""

    allow_hosts: tuple[str, ...] = ()  # if non-empty, only these hostnames
    allow_addresses: tuple[str, ...] = ()  # IPs or networks, e.g. "127.0.0.1" for a test server
    timeout_s: float = 10.0
    max_bytes: int = 512_000
    max_redirects: int = 5

    def __post_init__(self) -> None:
        self._allowed_networks  # noqa: B018 - parse now so a typo fails at startup, not mid-fetch

    @cached_property
    def _allowed_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(a, strict=False) for a in self.allow_addresses)

    def address_allowed(self, ip: IPAddress) -> bool:
        if any(ip.version == net.version and ip in net for net in self._allowed_networks):
            return True
        return not _is_forbidden(ip)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address can carry to (mapped, 6to4, Teredo, NAT64, compatible)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64 or int(ip) >> 32 == 0:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _is_forbidden(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return True
        if any(_is_forbidden(v4) for v4 in _embedded_ipv4(ip)):
            return True
        if ip.is_site_local:
            return True
    if any(ip.version == net.version and ip in net for net in _BLOCKED_NETWORKS):
        return True
    return bool(
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def contacted_host(host: str) -> str | None:
    """The host as it is looked up and contacted, as httpx sends it (IDNA: "аpple.com" is "xn--pple-43d.com");
    None when it is not a valid name."""
    try:
        return httpx.URL(f"http://{host.strip()}/").raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return None


def _contacted_form(host: str) -> str:
    """An allowed host as a URL's host compares: IDNA ("bücher.example" allows "xn--bcher-kva.example"),
    lower case, no trailing dot. A name that is not valid IDNA is kept as written and matches nothing."""
    return (contacted_host(host) or host).lower().rstrip(".")


def parse_url(raw: str, policy: FetchPolicy) -> httpx.URL:
    """Parse and vet everything about a URL that does not need DNS."""
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ToolError(f"invalid URL: {raw}") from None
    if url.scheme not in ALLOWED_SCHEMES:
        raise ToolError(f"refusing URL scheme {url.scheme or '(none)'!r}: only http and https are allowed")
    if url.userinfo:
        raise ToolError("refusing URL with credentials in it")
    host = url.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        raise ToolError(f"URL has no host: {raw}")
    if url.port is not None and not 0 < url.port < 65536:
        raise ToolError(f"invalid port in URL: {raw}")
    if policy.allow_hosts and host not in {_contacted_form(h) for h in policy.allow_hosts}:
        raise ToolError(f"host {host!r} is not in the list of allowed hosts")
    return url


async def resolve_host(host: str, port: int) -> list[str]:
    """Addresses for host via the event loop's (threaded, non-blocking) getaddrinfo."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


async def pinned_address(url: httpx.URL, policy: FetchPolicy) -> str:
    """Resolve url's host once and return the address to connect to; refuse if any is not allowed."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = await resolve_host(host, port)
    except (OSError, UnicodeError):
        raise ToolError(f"cannot resolve host {host!r}") from None
    if not addresses:
        raise ToolError(f"cannot resolve host {host!r}")
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise ToolError(f"cannot resolve host {host!r}") from None
        # One bad address is enough: the name could otherwise be used to reach it on a retry.
        if not policy.address_allowed(ip):
            raise ToolError(f"refusing to fetch {host!r}: it resolves to a non-public address ({ip})")
    return addresses[0]
