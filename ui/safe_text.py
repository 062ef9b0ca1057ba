"""Escaping untrusted strings for where they are shown. One module, used by every place that shows
text from a user, a model, a file or a tool (cards, steps, titles, the operator console). Pure.

- `reveal_line`: a single-line value (path, tool name, source label, title): newlines and other
  controls become visible symbols (a path cannot start a new markdown line), and bidi/invisible
  characters become `<U+202E>` (a file name cannot display `exe.txt` for `txt.exe`).
- `reveal_block`: the same for multi-line text, keeping newlines and tabs.
- `code_span`: inline code that its content cannot close (a backtick run longer than any inside).
- `fence`: a code block that its content cannot close (a fence longer than any backtick run inside).
- `md_text`: plain text in markdown prose (every ASCII punctuation escaped, so nothing is markup).
"""

from __future__ import annotations

import re

# Bidirectional controls (embeddings, overrides, isolates, marks) and invisible characters.
BIDI_AND_INVISIBLE = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200e", "\u200f", "\u061c", "\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u180e"])
# In model prose, joiners (emoji sequences, Indic scripts) and RTL marks are legitimate: only the
# characters that reorder or hide text are revealed there.
PROSE_HIDDEN = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)] + ["\u200b", "\ufeff"])
_LINE_BREAKS = {"\n": "␊", "\r": "␍", "\t": "␉", "\u2028": "<U+2028>", "\u2029": "<U+2029>", "\x85": "<U+0085>"}
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")
_BACKTICKS = re.compile(r"`+")


def _visible(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # control pictures: ␀ … ␟
    if code == 0x7F:
        return "␡"
    return f"<U+{code:04X}>"


def _class(chars: frozenset[str] | str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in sorted(chars))


# One regex per context (a per-character loop in Python cost ~1 ms per 16 kB streamed).
_HIDDEN_BLOCK = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u2028\\u2029{_class(BIDI_AND_INVISIBLE)}]")
_HIDDEN_LINE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029{_class(BIDI_AND_INVISIBLE)}]")
_HIDDEN_PROSE = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f{_class(PROSE_HIDDEN)}]")


def _shown_line(m: re.Match[str]) -> str:
    ch = m.group()
    return _LINE_BREAKS.get(ch) or _visible(ch)


def reveal_line(value: str) -> str:
    """One line, every control and bidi/invisible character visible."""
    return _HIDDEN_LINE.sub(_shown_line, value)


def reveal_block(text: str) -> str:
    """Multi-line text: newlines and tabs kept (CRLF becomes LF), every other hidden character visible."""
    return _HIDDEN_BLOCK.sub(lambda m: _visible(m.group()), text.replace("\r\n", "\n"))


def reveal_prose(text: str) -> str:
    """Model prose: only characters that reorder or hide text, and stray controls, become visible."""
    return _HIDDEN_PROSE.sub(lambda m: _visible(m.group()), text)


def longest_backtick_run(text: str) -> int:
    return max((len(m) for m in _BACKTICKS.findall(text)), default=0)


def code_span(value: str) -> str:
    """Inline code showing `value` on one line; nothing inside can end it early."""
    shown = reveal_line(value)
    ticks = "`" * (longest_backtick_run(shown) + 1)
    if shown.strip(" ") and not (shown[0] in "` " or shown[-1] in "` "):
        return f"{ticks}{shown}{ticks}"
    # CommonMark strips one space each side when both are present: an edge backtick stays inside.
    return f"{ticks} {shown} {ticks}"


def fence(text: str, lang: str = "") -> str:
    """A fenced code block that a line of any number of backticks inside cannot close."""
    shown = reveal_block(text)
    ticks = "`" * max(3, longest_backtick_run(shown) + 1)
    return f"{ticks}{lang}\n{shown}\n{ticks}"


def md_text(value: str) -> str:
    """A single-line value as plain text in markdown prose: no markup, no new line."""
    return _PUNCT.sub(r"\\\1", reveal_line(value))
