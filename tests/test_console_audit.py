"""The audit's keyset paging over a real SQLite file: a stable order with ties, no row shifted or repeated
when decisions land between pages, filters, and refusals of a forged cursor or an unknown decision."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import update

from store import approvals as approval_store
from store import audit
from store import threads as thread_store
from store.db import Database
from store.models import APPROVALS
from store.values import StoredMessage
from ui import operator_static
from ui.operator_thread import conversation


async def decided(db: Database, tid: str, n: int, *, tool: str = "delete_file", decision: str = "approved") -> str:
    a = await approval_store.request_approval(db, owner="alice", thread_id=tid, tool_use_id=f"u{n}-{tool}", tool=tool,
                                              args={"n": n}, args_digest=f"d{n}", risk="", untrusted_sources=[],
                                              route="operator", timeout_s=600)
    await approval_store.decide(db, approval_id=a.id, decision=decision, decided_by="olga", via="console",
                                as_operator=True)
    return a.id


async def test_pages_keep_a_stable_order_while_new_decisions_arrive(db: Database) -> None:
    tid = (await thread_store.create_thread(db, owner="alice")).id
    ids = [await decided(db, tid, n) for n in range(9)]
    await db.transact(lambda c: c.execute(update(APPROVALS).where(APPROVALS.c.id.in_(ids[:6])).values(decided_at=1e9)))
    seen: list[str] = []
    page = await audit.decisions_page(db, limit=4)
    seen += [a.id for a in page.rows]
    await decided(db, tid, 100)  # newer than everything: must not push a row of page 1 onto page 2
    while page.next_cursor:
        page = await audit.decisions_page(db, limit=4, after=page.next_cursor)
        seen += [a.id for a in page.rows]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert seen[-6:] == sorted(ids[:6], reverse=True)  # the tie on decided_at is broken by id


async def test_filters_and_refusals(db: Database) -> None:
    tid = (await thread_store.create_thread(db, owner="alice")).id
    kept = await decided(db, tid, 1, tool="write_file", decision="rejected")
    await decided(db, tid, 2)
    only = await audit.decisions_page(db, where=audit.AuditFilter(tool="write_file", status="rejected"))
    assert [a.id for a in only.rows] == [kept] and only.next_cursor is None
    assert (await audit.decisions_page(db, where=audit.AuditFilter(user="bob"))).rows == []
    assert (await audit.decisions_page(db, where=audit.AuditFilter(until=1.0))).rows == []
    for cursor in ("", "x", "1.0", "nan~abc", "1.0~a' OR 1=1 --", "1.0~" + "a" * 65):
        with pytest.raises(ValueError):
            await audit.decisions_page(db, after=cursor)
    with pytest.raises(ValueError):
        await audit.decisions_page(db, where=audit.AuditFilter(status="pending"))


def test_hostile_messages_render_as_text() -> None:
    hostile = '<img src=x onerror="alert(1)"></pre><script>x()</script>\u202eexe'
    html = conversation([StoredMessage(seq=1, role="assistant", incomplete=False, created_at=0.0, content=[
        {"type": "text", "text": hostile}, {"type": "tool_use", "id": "t1", "name": hostile, "input": {"p": hostile}},
        {"type": hostile}])], [])
    assert "<img" not in html and "<script" not in html and "\u202e" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html and "<U+202E>" not in html
    assert "&lt;U+202E&gt;exe" in html


def test_the_vendored_chart_library_is_the_one_its_readme_names() -> None:
    vendor = operator_static.ROOT / "vendor"
    readme = (vendor / "README.md").read_text()
    assert "| chart.js | 4.5.1 |" in readme
    assert (vendor / "chart.umd.min.js").read_text()[:60].startswith("/*!\n * Chart.js v4.5.1")
    assert "MIT" in (vendor / "LICENSE-chart.js.md").read_text()
    for name, (path, _media) in operator_static.FILES.items():
        assert (operator_static.ROOT / path).is_file(), name
        assert Path(operator_static.ROOT / path).resolve().is_relative_to(operator_static.ROOT.resolve())
    assert hashlib.sha256((vendor / "chart.umd.min.js").read_bytes()).hexdigest() in readme
