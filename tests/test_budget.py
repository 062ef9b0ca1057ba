"""Budgets through the real Agent: which limit stops a turn, what the user is told, faults and recovery.

Costs use claude-sonnet-5-5 with usage reported by the scripted model (usage_override), so every
figure below is hand-computable: input $2, output $10 per million; cache fields are set to 0.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from agent.budget import Budget, BudgetExceeded
from agent.demo_model import Fault, Reply, TextBlock, ToolUseBlock
from agent.events import Notice, TextDelta, ToolFinished, TurnFinished
from agent.pricing import PriceTable
from store import threads as thread_store
from store import usage as usage_store
from store.models import MODEL_CALLS
from store.usage import TokenUsage
from tests.conftest import APPROVE_ALL, Recorder

pytestmark = pytest.mark.both_backends  # the `db` tests run on SQLite and on PostgreSQL


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_creation_input_tokens": 0,
            "ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0, "cache_read_input_tokens": 0}


def text(t: str, input_tokens: int = 1_000, output_tokens: int = 1_000) -> Reply:
    return Reply(blocks=(TextBlock(t),), usage_override=usage(input_tokens, output_tokens))


async def calls(db) -> list:
    async with db.read() as conn:
        return list((await conn.execute(select(MODEL_CALLS).order_by(MODEL_CALLS.c.id))).all())


async def turn(h, tid: str, msg: str = "hi", owner: str = "alice") -> tuple[TurnFinished, Recorder]:
    rec = Recorder()
    done = await h.agent.run_turn(owner=owner, thread_id=tid, text=msg, emit=rec, approver=APPROVE_ALL)
    return done, rec


def budget_notice(rec: Recorder) -> str:
    [notice] = [n for n in rec.of(Notice) if n.kind == "budget"]
    return notice.message


# Output dominates every worst case (20k tokens at $10/M = $0.20), so the figures below hold for any
# prompt estimate under ~20k tokens, however the system prompt and tools grow.
BIG = 20_000


async def test_budget_stop_says_limit_spent_left_and_reset_keeps_work_and_recovers(make_harness):
    h = make_harness([
        Reply(blocks=(TextBlock("Let me look."), ToolUseBlock("list_files", {"path": "."})), stop_reason="tool_use",
              usage_override=usage(1_000, BIG)),
        text("Back again."),
    ], max_tokens=BIG)
    # The first call (worst ~$0.21) fits $0.30 and costs 1000*2 + 20000*10 = $0.202; the $0.098 left is
    # less than the next call's worst case.
    await usage_store.set_budget(h.db, user="alice", daily_nanousd=300_000_000, monthly_nanousd=None)
    tid = await h.thread()
    done, rec = await turn(h, tid, "what files do I have")

    assert done.stop_reason == "budget"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    msg = budget_notice(rec)
    for part in ("daily budget for alice", "Used $0.2020 of $0.3000", "$0.0980 left",
                 f"resets at {tomorrow} 00:00 UTC"):
        assert part in msg, msg
    # What was streamed and what the tool returned are kept.
    assert "".join(d.text for d in rec.of(TextDelta)) == "Let me look."
    assert len(rec.of(ToolFinished)) == 1
    stored = await thread_store.load_messages(h.db, owner="alice", thread_id=tid)
    assert [m.role for m in stored] == ["user", "assistant", "user"]
    # Stored exactly as returned: reasoning, the text, a progress update, the call.
    assert [b["type"] for b in stored[1].content] == ["thinking", "text", "thinking", "tool_use"]
    assert stored[1].content[1] == {"type": "text", "text": "Let me look."}
    assert stored[2].content[0]["type"] == "tool_result"
    assert [r.status for r in await calls(h.db)] == ["settled"]

    await usage_store.set_budget(h.db, user="alice", daily_nanousd=1_000_000_000, monthly_nanousd=None)
    done, rec = await turn(h, tid, "go on")
    assert done.stop_reason == "end_turn" and not rec.of(Notice)
    h.brain.assert_done()
    # The model saw the earlier tool result: the refused turn left a valid history.
    assert any(b.get("type") == "tool_result" for m in h.brain.requests[-1]["messages"] for b in m["content"])


@pytest.mark.parametrize(("overrides", "limit", "unit"), [
    ({"max_calls_per_thread": 1}, "thread's model-call limit", "Used 1 model call of 1 model call"),
    # Reserved: prompt + 20000 <= 40500; used 1000 + 20000; the 19,500 left < the next call's 20000 + prompt.
    ({"max_tokens_per_thread": 40_500}, "thread's token limit", "Used 21,000 tokens of 40,500 tokens"),
    ({"max_usd_per_thread": Decimal("0.30")}, "thread's cost limit", "Used $0.2020 of $0.3000"),
])
async def test_thread_limits_stop_the_thread_but_not_a_new_one(make_harness, overrides, limit, unit):
    h = make_harness([text("one", 1_000, BIG), text("fresh thread")], max_tokens=BIG, **overrides)
    tid = await h.thread()
    done, _ = await turn(h, tid)
    assert done.stop_reason == "end_turn"
    done, rec = await turn(h, tid, "again")
    assert done.stop_reason == "budget"
    msg = budget_notice(rec)
    assert limit in msg and unit in msg and "does not reset: start a new thread" in msg, msg
    done, _ = await turn(h, await h.thread(), "new thread")
    assert done.stop_reason == "end_turn"
    h.brain.assert_done()


async def test_global_daily_limit_stops_every_user(make_harness):
    h = make_harness([text("bob's answer", 1_000, BIG)], global_daily_usd=Decimal("0.30"), max_tokens=BIG)
    done, _ = await turn(h, await h.thread("bob"), owner="bob")
    assert done.stop_reason == "end_turn"
    done, rec = await turn(h, await h.thread("alice"))
    assert done.stop_reason == "budget"
    msg = budget_notice(rec)
    assert "deployment's daily budget" in msg and "Used $0.2020 of $0.3000" in msg and "resets at" in msg, msg
    h.brain.assert_done()


async def test_monthly_limit_resets_on_the_first_of_next_month(make_harness):
    h = make_harness([text("one", 1_000, BIG)], max_tokens=BIG)
    await usage_store.set_budget(h.db, user="alice", daily_nanousd=None, monthly_nanousd=300_000_000)
    tid = await h.thread()
    assert (await turn(h, tid))[0].stop_reason == "end_turn"
    done, rec = await turn(h, tid)
    assert done.stop_reason == "budget"
    now = datetime.now(UTC)
    first = f"{now.year + (now.month == 12):04d}-{now.month % 12 + 1:02d}-01"
    msg = budget_notice(rec)
    assert "monthly budget for alice" in msg and f"resets on {first} UTC" in msg, msg


async def test_a_single_call_larger_than_the_limit_says_an_operator_must_raise_it(make_harness):
    h = make_harness([], max_tokens=64_000)  # 64k output at $10/M = $0.64 > $0.50
    await usage_store.set_budget(h.db, user="alice", daily_nanousd=500_000_000, monthly_nanousd=None)
    done, rec = await turn(h, await h.thread())
    assert done.stop_reason == "budget" and "an operator must raise it" in budget_notice(rec)
    assert await calls(h.db) == []


async def test_stream_cut_releases_and_charges_the_usage_reported_before_the_cut(make_harness):
    h = make_harness([Reply(blocks=(TextBlock("This answer will be cut off half way through."),),
                            fault=Fault("cut"), usage_override=usage(1_000, 0))])
    tid = await h.thread()
    done, rec = await turn(h, tid)
    assert done.stop_reason == "api_error"
    [row] = await calls(h.db)
    assert row.error and "cut" in row.error
    assert rec.of(TextDelta)  # the partial text was shown and is kept
    stored = await thread_store.load_messages(h.db, owner="alice", thread_id=tid)
    assert stored[-1].incomplete
    # message_start reported 1000 input tokens and 1 output token; the text that did stream was billed
    # too, so it is charged at a conservative UTF-8 bytes / 3: 1000 * $2/M + out * $10/M.
    out = (len(stored[-1].content[0]["text"].encode()) + 2) // 3
    assert out > 1
    assert (row.status, row.input_tokens, row.output_tokens) == ("released", 1_000, out)
    assert row.cost_nanousd == 1_000 * 2_000 + out * 10_000


async def test_persistent_529_releases_the_reservation_after_the_sdk_retries(make_harness):
    overloaded = Reply(fault=Fault("http", status=529, error_type="overloaded_error", message="Overloaded"))
    h = make_harness([overloaded] * 3)  # max_retries=2: one step per HTTP attempt
    done, rec = await turn(h, await h.thread())
    h.brain.assert_done()
    assert done.stop_reason == "api_error"
    assert any(n.kind == "api_error" and "529" in n.message for n in rec.of(Notice))
    [row] = await calls(h.db)
    assert (row.status, row.cost_nanousd) == ("released", 0)
    assert await usage_store.spent(h.db, scope="user_day", user="alice") == 0


async def test_stop_button_charges_the_usage_reported_before_the_stop(make_harness):
    # Long enough that the stream spans many reads: the stop lands while it is still arriving.
    h = make_harness([Reply(blocks=(TextBlock("A long answer " * 1_000),), usage_override=usage(1_000, 0))])
    tid = await h.thread()
    task: asyncio.Task[TurnFinished] | None = None

    async def emit(event) -> None:
        if isinstance(event, TextDelta) and task is not None:
            task.cancel()

    task = asyncio.create_task(h.agent.run_turn(owner="alice", thread_id=tid, text="hi", emit=emit,
                                                approver=APPROVE_ALL))
    with pytest.raises(asyncio.CancelledError):
        await task
    [row] = await calls(h.db)
    assert row.status == "released"
    assert row.cost_nanousd >= 2_000_000  # at least the 1000 input tokens at $2/M


async def test_summary_reservations_share_the_same_limits(db, settings):
    budget = Budget(db, PriceTable.load(), settings)
    await usage_store.set_budget(db, user="alice", daily_nanousd=16_000_000, monthly_nanousd=None)
    r = await budget.reserve(user="alice", thread_id=None, turn_id="t1", model=settings.summary_model,
                             purpose="summary", prompt_tokens=10_000, max_tokens=1_000)
    # haiku-5-5: 10000 at the 1h write rate 0.20 + 1000 at 0.50 = $0.0025 held
    assert r.nanousd == 2_500_000
    chat = {"user": "alice", "thread_id": None, "turn_id": "t2", "model": settings.model, "purpose": "chat",
            "prompt_tokens": 1_000, "max_tokens": 1_024}
    # A chat call needs 1000*4 + 1024*10 = $0.01424: alone it fits $0.016, not next to the summary's hold.
    with pytest.raises(BudgetExceeded) as e:
        await budget.reserve(**chat)
    assert e.value.limit.scope == "user_day" and e.value.in_flight == 2_500_000
    cost = await budget.settle(r, TokenUsage(input_tokens=10_000, output_tokens=500), stop_reason="end_turn",
                               ttft_ms=None, latency_ms=1.0)
    assert cost == 1_250_000  # 10000*0.10 + 500*0.50
    await budget.reserve(**chat)  # $0.00125 + $0.01424 fits
    rows = await calls(db)
    assert [(r.purpose, r.status, r.cost_nanousd) for r in rows] == [("summary", "settled", 1_250_000),
                                                                   ("chat", "reserved", 0)]


async def test_calls_per_message_cap_is_checked_in_the_reservation(db, settings):
    budget = Budget(db, PriceTable.load(), settings)
    for _ in range(2):
        await budget.reserve(user="alice", thread_id="th", turn_id="turn", model=settings.model, purpose="chat",
                             prompt_tokens=10, max_tokens=10, calls_this_turn_cap=2)
    with pytest.raises(BudgetExceeded, match="limit of model calls per message") as e:
        await budget.reserve(user="alice", thread_id="th", turn_id="turn", model=settings.model, purpose="chat",
                             prompt_tokens=10, max_tokens=10, calls_this_turn_cap=2)
    assert "resets with your next message" in str(e.value)
    # Another message (turn) of the same thread may call again.
    await budget.reserve(user="alice", thread_id="th", turn_id="turn2", model=settings.model, purpose="chat",
                         prompt_tokens=10, max_tokens=10, calls_this_turn_cap=2)


async def test_refusal_mentions_what_running_calls_hold(db, settings):
    budget = Budget(db, PriceTable.load(), settings)
    await usage_store.set_budget(db, user="alice", daily_nanousd=30_000_000, monthly_nanousd=None)
    await budget.reserve(user="alice", thread_id=None, turn_id="a", model="claude-sonnet-5-5", purpose="chat",
                         prompt_tokens=1_000, max_tokens=2_000)  # holds 1000*4 + 2000*10 = $0.024
    with pytest.raises(BudgetExceeded) as e:
        await budget.reserve(user="alice", thread_id=None, turn_id="b", model="claude-sonnet-5-5", purpose="chat",
                             prompt_tokens=1_000, max_tokens=2_000)
    assert (e.value.used, e.value.in_flight) == (24_000_000, 24_000_000)
    assert "$0.0240 of it held by calls still running" in str(e.value)


async def test_leftover_reservations_are_charged_at_worst_case_and_a_late_settle_changes_nothing(db, settings,
                                                                                                caplog):
    budget = Budget(db, PriceTable.load(), settings)
    r = await budget.reserve(user="alice", thread_id=None, turn_id="a", model="claude-sonnet-5-5", purpose="chat",
                             prompt_tokens=1_000, max_tokens=1_000)
    assert await usage_store.release_stale_reservations(db) == 1
    with caplog.at_level(logging.WARNING, logger="tollgate.budget"):
        await budget.settle(r, TokenUsage(input_tokens=1), stop_reason="end_turn", ttft_ms=None, latency_ms=1.0)
    assert "already closed" in caplog.text
    [row] = await calls(db)
    assert (row.status, row.cost_nanousd) == ("released", r.nanousd)


async def test_a_cost_above_the_reservation_is_logged(db, settings, caplog):
    budget = Budget(db, PriceTable.load(), settings)
    r = await budget.reserve(user="alice", thread_id=None, turn_id="a", model="claude-sonnet-5-5", purpose="chat",
                             prompt_tokens=10, max_tokens=10)
    with caplog.at_level(logging.WARNING, logger="tollgate.budget"):
        cost = await budget.settle(r, TokenUsage(input_tokens=100_000), stop_reason="end_turn", ttft_ms=None,
                                   latency_ms=1.0)
    assert cost == 200_000_000 and "prompt estimate was too low" in caplog.text


async def test_an_overrun_is_settled_counted_traced_and_widens_that_users_next_reservation(make_harness):
    # The model bills 10,000 input tokens for a prompt estimated at ~3,300: the reservation was too low
    # (the scripted cost is set so the whole call overruns). The real cost is charged, the overrun is counted
    # for the operator and traced, and the next reservation of that user (not of others) is sized from the
    # observed ratio.
    from agent.trace import TraceLog
    from store import margins as margin_store

    h = make_harness([text("big", 10_000, 10), text("next", 1_000, 10), text("bob", 1_000, 10)], max_tokens=10)
    traced: list[dict] = []
    h.agent.deps.budget.trace = TraceLog(None, content=False, sinks=[traced.append])
    tid = await h.thread()
    await turn(h, tid)
    [first] = await calls(h.db)
    assert first.status == "settled" and first.cost_nanousd == 10_000 * 2_000 + 10 * 10_000
    assert first.cost_nanousd > first.reserved_nanousd
    margin = await margin_store.margin_for(h.db, user="alice")
    assert margin.overruns == 1 and margin.overrun_nanousd == first.cost_nanousd - first.reserved_nanousd
    assert margin.factor_milli > 1000
    [event] = [e for e in traced if e["kind"] == "reservation_overrun"]
    assert event["user"] == "alice" and event["cost_nanousd"] == first.cost_nanousd and event["overruns"] == 1

    await turn(h, tid, "again")  # a similar prompt: the reservation now covers what the first call billed
    await turn(h, await h.thread("bob"), "hello", owner="bob")
    _, second, bob = await calls(h.db)
    # The prompt the reservation allows for (reserved tokens less max_tokens) now covers what was billed.
    assert second.reserved_tokens - 10 >= first.input_tokens == 10_000
    assert bob.reserved_tokens - 10 < 10_000  # another user's estimate is not widened
    assert (await margin_store.margin_for(h.db, user="bob")).overruns == 0
    # A fresh Budget (a restart) reads the margin back from the store.
    fresh = Budget(h.db, PriceTable.load(), h.settings)
    assert await fresh.estimate_factor_milli("alice") == margin.factor_milli


async def test_the_estimate_margin_is_bounded(db, settings):
    budget = Budget(db, PriceTable.load(), settings)
    await usage_store.set_budget(db, user="alice", daily_nanousd=10**10, monthly_nanousd=None)
    r = await budget.reserve(user="alice", thread_id=None, turn_id="a", model="claude-sonnet-5-5", purpose="chat",
                             prompt_tokens=10, max_tokens=10)
    await budget.settle(r, TokenUsage(input_tokens=1_000_000), stop_reason="end_turn", ttft_ms=None,
                        latency_ms=1.0)
    assert await budget.estimate_factor_milli("alice") == 4_000
    r2 = await budget.reserve(user="alice", thread_id=None, turn_id="b", model="claude-sonnet-5-5",
                              purpose="chat", prompt_tokens=10, max_tokens=10)
    assert r2.prompt_tokens == 40


async def test_unknown_user_is_a_clear_error(db, settings):
    budget = Budget(db, PriceTable.load(), settings)
    with pytest.raises(LookupError, match="no user 'mallory'"):
        await budget.reserve(user="mallory", thread_id=None, turn_id="a", model=settings.model, purpose="chat",
                             prompt_tokens=10, max_tokens=10)


async def test_a_reservation_whose_caller_is_cancelled_is_freed_not_left_held(make_harness):
    # The stop button can land while the reservation's transaction waits for the writer thread; that
    # transaction still commits, and nothing would settle it before the next restart charged it in full.
    import threading

    h = make_harness([])
    tid = await h.thread()
    started, go_on = threading.Event(), threading.Event()

    def hold_the_writer(_conn) -> None:
        started.set()
        go_on.wait(10)

    await h.agent.deps.budget.estimate_factor_milli("alice")  # read once per process: not in the way below
    blocker = asyncio.ensure_future(h.db.transact(hold_the_writer))
    await asyncio.to_thread(started.wait, 10)
    reserving = asyncio.ensure_future(h.agent.deps.budget.reserve(
        user="alice", thread_id=tid, turn_id="t1", model="claude-sonnet-5-5", purpose="chat",
        prompt_tokens=1_000, max_tokens=1_000))
    await asyncio.sleep(0)  # one loop step: reserve() starts its transaction (queued behind the blocker)
    reserving.cancel()
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await reserving
    await blocker
    [row] = await calls(h.db)
    assert (row.status, row.cost_nanousd) == ("released", 0)
    assert (await usage_store.usage_now(h.db, user="alice", thread_id=tid)).scopes["user_day"] == (0, 0)
