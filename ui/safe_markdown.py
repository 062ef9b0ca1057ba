"""Markdown from a model or a user, made safe to render: no image is ever fetched, every link shows
where it goes. Pure functions, no chainlit.

Rules (README "What the browser loads"):
- An inline image `![alt](url "t")` becomes the visible text `[image not loaded: alt — host]`.
- Every other `![` (reference-style `![alt][ref]`, `![alt][]`, `![alt]`, unfinished ones) gets its
  bracket escaped (`!\\[`): markdown has no image without a literal `![`, so none can render. This
  applies inside code too (shown there as `!\\[`): it does not depend on guessing code regions.
- A link `[text](https://host/…)` stays clickable and is followed by `(↗ host)`.
- A reference definition `[ref]: url` is shown as text, so `[text][ref]` links cannot hide a host.
- Characters that reorder or hide text (bidi overrides, isolates, zero-width space) become `<U+…>`.
Raw HTML is not rendered (chainlit's `unsafe_allow_html` is pinned off at start-up), so `<img>` shows
as text; the Content-Security-Policy blocks off-origin loads whatever slips through.

`StreamSanitizer` does the same for a streamed answer: the browser concatenates the deltas, so it
sends the sanitised text of what has arrived, holding back a tail that could still become an image
or link (`![x](` split across deltas), and re-sends the whole text in the rare case a held part
changes what was already sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ui.safe_text import md_text, reveal_prose

HOLD_LIMIT = 2_000  # a tail pending longer than this is sent (escaped) rather than held
_REF_DEF = re.compile(r"^([ \t]{0,3}(?:>[ \t]?)*(?:(?:[-*+]|\d{1,9}[.)])[ \t]+)?)\[(?=[^\n]*?\]:)", re.M)
_INCOMPLETE = -1


@dataclass(frozen=True)
class InlineLink:
    end: int  # index after the closing parenthesis
    label: str
    dest: str


def _match_bracket(text: str, i: int) -> int:
    """Index of the `]` closing the `[` at i; _INCOMPLETE if the text ends first, -2 if it cannot close."""
    depth, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i
        elif ch == "\n" and text.startswith("\n", i + 1):
            return -2  # a blank line ends the paragraph
        i += 1
    return _INCOMPLETE


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n":
        i += 1
    return i


def _parse_dest(text: str, i: int) -> tuple[int, str] | int:
    n = len(text)
    if i < n and text[i] == "<":
        j = text.find(">", i)
        if j < 0:
            return _INCOMPLETE if "\n" not in text[i:] else -2
        return j + 1, text[i + 1:j]
    start, depth = i, 0
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch in " \t\n" or ord(ch) < 0x20:
            break
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        i += 1
    if i >= n:
        return _INCOMPLETE
    return i, text[start:i]


def parse_inline(text: str, i: int) -> InlineLink | int:
    """The inline link or image body `[label](dest "title")` starting at the `[` at i.
    Returns _INCOMPLETE if more text could still make it one, -2 if it is not one."""
    close = _match_bracket(text, i)
    if close < 0:
        return close
    j = close + 1
    if j >= len(text):
        return _INCOMPLETE
    if text[j] != "(":
        return -2
    j = _skip_space(text, j + 1)
    if j >= len(text):
        return _INCOMPLETE
    parsed = _parse_dest(text, j)
    if isinstance(parsed, int):
        return parsed
    j, dest = parsed
    j = _skip_space(text, j)
    if j < len(text) and text[j] in "\"'(":
        closer = ")" if text[j] == "(" else text[j]
        k = j + 1
        while k < len(text) and text[k] != closer:
            k += 2 if text[k] == "\\" else 1
        if k >= len(text):
            return _INCOMPLETE
        j = _skip_space(text, k + 1)
    if j >= len(text):
        return _INCOMPLETE
    if text[j] != ")":
        return -2
    return InlineLink(end=j + 1, label=text[i + 1:close], dest=dest)


def host_of(dest: str) -> str:
    dest = dest.strip()
    try:
        parts = urlsplit(dest)
    except ValueError:
        return "unreadable address"
    if parts.hostname:
        return parts.hostname
    if parts.scheme:
        return f"{parts.scheme}: address"
    return "this app"


def image_placeholder(alt: str, dest: str) -> str:
    alt_shown = md_text(alt.strip()) or "no description"
    return f"\\[image not loaded: {alt_shown} — {md_text(host_of(dest))}\\]"


def _rewrite_inline(text: str) -> str:
    out: list[str] = []
    i, n, copied = 0, len(text), 0
    while True:
        i = text.find("[", i)
        if i < 0 or i >= n:
            break
        if i > 0 and text[i - 1] == "\\":
            i += 1
            continue
        found = parse_inline(text, i)
        if not isinstance(found, InlineLink):
            i += 1
            continue
        is_image = i > 0 and text[i - 1] == "!"
        start = i - 1 if is_image else i
        out.append(text[copied:start])
        if is_image:
            out.append(image_placeholder(found.label, found.dest))
        else:
            close = i + 1 + len(found.label)
            out.append("[" + _rewrite_inline(found.label) + text[close:found.end])
            parts = urlsplit(found.dest.strip()) if "://" in found.dest else None
            if parts is not None and parts.hostname:
                out.append(f" (↗ {md_text(parts.hostname)})")
        copied = i = found.end
    out.append(text[copied:])
    return "".join(out)


def _sanitize_paragraph(text: str) -> str:
    text = reveal_prose(text)
    text = _rewrite_inline(text)
    text = text.replace("![", "!\\[")
    return _REF_DEF.sub(lambda m: m.group(1) + "\\[", text)


def sanitize(text: str) -> str:
    """Markdown that renders no image and shows every link's host (see the module rules).
    Each blank-line-separated part is done alone (no construct spans a blank line), so a stream
    only redoes its last paragraph."""
    return "\n\n".join(_sanitize_paragraph(part) for part in text.split("\n\n"))


def pending_from(raw: str) -> int:
    """Where a tail that could still become an image or link begins (len(raw) if none)."""
    end = len(raw)
    hold = end - 1 if raw.endswith("!") else end  # "!" then "[" in the next delta
    floor = max(0, end - HOLD_LIMIT, raw.rfind("\n\n") + 1)
    i = raw.find("[", floor)
    while 0 <= i < end:
        if parse_inline(raw, i) == _INCOMPLETE:
            start = i - 1 if i > 0 and raw[i - 1] == "!" else i
            return min(hold, start)
        i = raw.find("[", i + 1)
    return hold


class StreamSanitizer:
    """Turns raw deltas into deltas whose every concatenation is sanitised markdown."""

    def __init__(self) -> None:
        self.raw = ""
        self.sent = ""
        self.resends = 0
        self._done = 0  # raw[:_done] ends at a blank line and is sanitised once, into _done_clean
        self._done_clean = ""

    def _step(self, stable: int) -> tuple[str, bool]:
        cut = self.raw.rfind("\n\n", self._done, stable)
        if cut >= 0:
            self._done_clean += sanitize(self.raw[self._done:cut + 2])
            self._done = cut + 2
        clean = self._done_clean + sanitize(self.raw[self._done:stable])
        if clean.startswith(self.sent):
            delta, self.sent = clean[len(self.sent):], clean
            return delta, False
        self.sent = clean  # a held part changed what was sent (rare): the browser gets it all again
        self.resends += 1
        return clean, True

    def feed(self, delta: str) -> tuple[str, bool]:
        """(text, replace): append `text`, or replace everything sent with it when `replace`."""
        self.raw += delta
        return self._step(pending_from(self.raw))

    def finish(self) -> tuple[str, bool]:
        return self._step(len(self.raw))
