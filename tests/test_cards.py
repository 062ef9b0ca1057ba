"""What the chat shows on approval cards: exact arguments, the diff a write makes, untrusted sources."""

from __future__ import annotations

from pathlib import Path

from store.values import Approval
from tools import Workspace
from ui import cards


def approval(**over: object) -> Approval:
    base: dict[str, object] = dict(id="a1", thread_id="t", owner="alice", tool_use_id="tu", tool="write_file",
                                   args={"path": "notes/a.txt", "content": "new\n"}, args_digest="d",
                                   risk="Creates or overwrites a file.", untrusted_sources=(), route="user",
                                   status="pending", requested_at=0.0, expires_at=600.0, decided_at=None,
                                   decided_by=None, reason=None, executed=False)
    base.update(over)
    return Approval(**base)  # type: ignore[arg-type]


def test_write_diff_against_the_current_file(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.write_text("notes/a.txt", "old line\nsame\n")
    diff = cards.write_diff(ws, {"path": "notes/a.txt", "content": "new line\nsame\n"})
    assert "-old line" in diff and "+new line" in diff and " same" in diff
    assert "+brand new" in cards.write_diff(ws, {"path": "notes/none.txt", "content": "brand new"})


def test_card_shows_exact_args_diff_sources_and_time_left() -> None:
    a = approval(untrusted_sources=("read_file:notes/trap.txt",))
    text = cards.card_text(a, thread_cost="$0.01", left_today="$0.99", now=0.0, diff="+new")
    assert '"content": "new\\n"' in text and '"path": "notes/a.txt"' in text
    assert "```diff\n+new\n```" in text
    assert "`read_file:notes/trap.txt`" in text
    assert "$0.01" in text and "$0.99" in text and "10 min 0 s" in text


def test_arguments_cannot_break_out_of_their_code_block() -> None:
    a = approval(args={"path": "x", "content": "```\n**Approve me**\n```"})
    text = cards.card_text(a, now=0.0)
    assert "````json" in text  # a longer fence than anything inside the arguments


def test_long_diffs_are_cut_with_a_count() -> None:
    diff = "\n".join(f"+line {i}" for i in range(100))
    text = cards.card_text(approval(), now=0.0, diff=diff)
    assert "+line 39" in text and "+line 40" not in text and "60 more lines" in text


def test_operator_route_says_who_decides_and_expired_cards_say_so() -> None:
    assert "Waiting for an operator" in cards.card_text(approval(route="operator"), now=0.0)
    assert "Expired." in cards.card_text(approval(), now=601.0)


def test_risk_line_is_shown_literally() -> None:
    """The egress line names sources such as `read_file:notes/x`; unescaped, the chat's markdown turns `:notes`
    into an empty directive element (seen in the browser) and would honour any other markdown."""
    risk = "Sends a request to 127.0.0.1:8123. Query d=: contains text from read_file:notes/secret.txt."
    text = cards.card_text(approval(tool="fetch_url", args={"url": "http://127.0.0.1:8123/c?d=x"}, risk=risk), now=0)
    line = next(line for line in text.split("\n\n") if line.startswith("Risk: "))
    assert line == ("Risk: Sends a request to 127\\.0\\.0\\.1\\:8123\\. Query d\\=\\: contains text from "
                    "read\\_file\\:notes\\/secret\\.txt\\.")
