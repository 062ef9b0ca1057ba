"""Egress: when a call that can carry data off the machine may run without a card, and what its card says.

The rule (README, "What may leave the machine"): an egress call runs without a card only when
(a) the thread holds no untrusted content — no untrusted tool output earlier in the thread (any turn, any
status, replayed or resumed) and no other untrusted call in the same model response — and (b) every
argument is a string that is exactly a URL the user typed in a message of this thread. Anything else,
including anything this module cannot decide, goes through the approval gate like a side effect.

The card's risk line says where each part of the address came from: typed by the user, text found in the
output of a named untrusted source, or neither (made by the model). The line is plain text built only from
safe characters, because it is rendered as markdown on the card.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from store.values import StoredMessage
from tools import Tool
from tools.netguard import contacted_host

# A URL as typed: scheme, then anything up to whitespace or a character that cannot be part of one.
_TYPED_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}>'\"*_"  # sentence punctuation and markdown around a typed URL
_WINDOW = 8  # a part shares text with an output when a run of >= 11 characters is common to both
_STRIDE = 4
_MIN_TRACED = 4  # shorter parts are too short to tell where they came from
_MAX_PARTS = 12
_SAFE = re.compile(r"[^A-Za-z0-9._:/@%+=~-]")
_SAFE_KEY = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@dataclass(frozen=True)
class Source:
    """Untrusted text already in the thread: a tool output and its provenance label."""

    label: str
    text: str


@dataclass(frozen=True)
class Part:
    name: str  # "host", "path segment 2", "query d=", "fragment", ...
    text: str


def user_texts(messages: Sequence[StoredMessage]) -> tuple[str, ...]:
    """What the user typed in this thread: the text blocks of user messages (never tool results)."""
    return tuple(
        b["text"] for m in messages if m.role == "user" and isinstance(m.content, list)
        for b in m.content if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str))


def results_in_history(messages: Sequence[StoredMessage], *, trusted_tools: frozenset[str]) -> bool:
    """True if any tool result in the stored messages came from a tool whose output is untrusted (or unknown).

    A second witness next to the tool-call records: taint must survive even if those records are gone."""
    names = {b.get("id"): b.get("name") for m in messages if m.role == "assistant" and isinstance(m.content, list)
             for b in m.content if isinstance(b, dict) and b.get("type") == "tool_use"}
    return any(names.get(b.get("tool_use_id")) not in trusted_tools
               for m in messages if m.role == "user" and isinstance(m.content, list)
               for b in m.content if isinstance(b, dict) and b.get("type") == "tool_result")


def typed_urls(texts: Iterable[str]) -> frozenset[str]:
    """Every URL the user typed, as typed and without trailing punctuation ("see http://x/a." -> .../a)."""
    found: set[str] = set()
    for text in texts:
        for match in _TYPED_URL.finditer(text):
            found.add(match.group(0))
            found.add(match.group(0).rstrip(_TRAILING))
    return frozenset(found)


def card_free(args: dict[str, Any], *, tainted: bool, typed: frozenset[str]) -> bool:
    """True only for an untainted thread and arguments that are all exactly URLs the user typed."""
    if tainted or not args:
        return False
    return all(isinstance(v, str) and v in typed for v in args.values())


def batch_needs_cards(plan: Sequence[tuple[dict[str, Any], Tool, dict[str, Any]]], *, tainted_before: bool,
                      typed: frozenset[str]) -> set[str]:
    """tool_use ids of the calls in one model response that must go through the approval gate."""
    untrusted = [use["id"] for use, tool, _ in plan if not tool.trusted_output]
    gated: set[str] = set()
    for use, tool, args in plan:
        same_batch = any(tid != use["id"] for tid in untrusted)  # conservative: any other untrusted call
        if tool.side_effect or (tool.egress and not card_free(args, tainted=tainted_before or same_batch,
                                                               typed=typed)):
            gated.add(use["id"])
    return gated


# -- the card's provenance line -----------------------------------------------------------------------------


def _safe(text: str, limit: int = 80) -> str:
    text = _SAFE.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _destination(hostport: str, host: str) -> str:
    """The card's line for where a request goes. A name with non-ASCII letters is shown in the form that is
    contacted: letters from another alphabet can imitate a familiar name ("аpple.com" with a Cyrillic а)."""
    if host.isascii():
        return f"Sends a request to {_safe(hostport)}; everything in the address leaves this machine."
    contacted = contacted_host(host)  # as fetch_url contacts it
    if contacted is None:
        return "The address's host is not a valid name; read it in full above."
    port = hostport[len(host):]
    return (f"Sends a request to {_safe(contacted + port)}, an internationalised name written with non-ASCII "
            "letters, which can imitate another site's name; everything in the address leaves this machine.")


def url_parts(url: str) -> tuple[str, list[Part]] | None:
    """(host:port, the parts that carry data) of an http(s) URL; None when it cannot be parsed."""
    try:
        split = urlsplit(url)
        port = split.port
    except ValueError:
        return None
    if split.scheme.lower() not in ("http", "https") or not split.netloc:
        return None
    userinfo, _, hostport = split.netloc.rpartition("@")
    host = hostport.rsplit(":", 1)[0] if port is not None else hostport
    parts = [Part("user info", userinfo)] if userinfo else []
    parts.append(Part("host", host))
    parts += [Part(f"path segment {i}", seg) for i, seg in enumerate(split.path.split("/"), 0) if seg]
    for i, item in enumerate(split.query.split("&"), 1):
        key = item.partition("=")[0]
        if item:
            parts.append(Part(f"query {key}=" if _SAFE_KEY.fullmatch(key) else f"query item {i}", item))
    if split.fragment:
        parts.append(Part("fragment", split.fragment))
    return hostport, parts


def _windows(text: str) -> set[str]:
    if len(text) <= _WINDOW:
        return {text}
    starts = [*range(0, len(text) - _WINDOW, _STRIDE), len(text) - _WINDOW]
    return {text[i: i + _WINDOW] for i in starts}


def _origin(part: Part, typed: Sequence[str], sources: Sequence[tuple[str, str]]) -> str | None:
    """Where a part came from; `typed` and the source texts are already lower-cased."""
    forms = {part.text.lower(), unquote_plus(part.text).lower()}
    if max(len(f) for f in forms) < _MIN_TRACED:
        return None
    windows = set().union(*(_windows(f) for f in forms))
    found = [label for label, text in sources if any(w in text for w in windows)]
    was_typed = any(f in t for f in forms for t in typed)
    if found:
        labels = ", ".join(_safe(label) for label in dict.fromkeys(found))
        return f"contains text from {labels}" + (", also typed by you" if was_typed else "")
    return "typed by you" if was_typed else "not typed by you and not in any tool output: made by the model"


def risk_text(tool: Tool, args: dict[str, Any], *, typed: Sequence[str], sources: Sequence[Source]) -> str:
    """One short paragraph for the card: where the call goes and where each part of it came from."""
    lines: list[str] = []
    parts: list[Part] = []
    for key, value in sorted(args.items()):
        parsed = url_parts(value) if isinstance(value, str) else None
        if parsed is None:
            if isinstance(value, str) and value.lower().startswith(("http:", "https:")):
                lines.append("The address could not be parsed; read it in full above.")
            parts.append(Part(f"argument {_safe(key, 32)}", str(value)))
            continue
        hostport, url_bits = parsed
        lines.append(_destination(hostport, next(p.text for p in url_bits if p.name == "host")))
        parts += url_bits
    typed_lower = [t.lower() for t in typed]
    lowered = [(s.label, s.text.lower()) for s in sources]
    traced = [(p, o) for p in parts if (o := _origin(p, typed_lower, lowered)) is not None]
    for part, origin in traced[:_MAX_PARTS]:
        lines.append(f"{part.name[:1].upper()}{part.name[1:]}: {origin}.")
    if len(traced) > _MAX_PARTS:
        lines.append(f"{len(traced) - _MAX_PARTS} more parts not listed.")
    return " ".join(lines) or tool.risk
