"""Per-user model and effort: a user's choice applies to NEW threads only, a thread keeps the settings it
started with (resume included, so its prompt cache survives), and a choice the API would refuse changes
nothing."""

from __future__ import annotations

from agent import thread_model
from agent.budget import Budget
from agent.events import ApprovalRequested
from agent.pricing import PriceTable
from fakeclaude import Reply, TextBlock, ToolUseBlock
from store import approvals as approval_store
from store import model_prefs
from store import usage as usage_store
from tests.conftest import Recorder, ScriptedApprover, deciding


def ok(text: str = "ok") -> Reply:
    return Reply((TextBlock(text),))


def sent(request: dict[str, object]) -> tuple[object, object]:
    return request["model"], request["output_config"]


async def test_a_users_choice_applies_to_new_threads_and_an_open_thread_keeps_its_own(make_harness):
    h = make_harness([ok(), ok(), ok(), ok()])
    old = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=old, text="hi",
        emit=deciding(h.agent, Recorder(), ScriptedApprover({})))
    await model_prefs.set_user_pref(h.db, user="alice", model="claude-haiku-5-5", effort="low")
    await h.agent.run_turn(owner="alice", thread_id=old, text="again",
        emit=deciding(h.agent, Recorder(), ScriptedApprover({})))
    new = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=new, text="hi",
        emit=deciding(h.agent, Recorder(), ScriptedApprover({})))
    await model_prefs.set_user_pref(h.db, user="alice", model="claude-opus-5-5", effort="high")
    await h.agent.run_turn(owner="alice", thread_id=new, text="again",
        emit=deciding(h.agent, Recorder(), ScriptedApprover({})))
    assert [sent(r) for r in h.brain.requests] == [
        ("claude-sonnet-5-5", {"effort": "medium"}), ("claude-sonnet-5-5", {"effort": "medium"}),
        ("claude-haiku-5-5", {"effort": "low"}), ("claude-haiku-5-5", {"effort": "low"})]
    # The reservation and the bill are for the thread's own model.
    report = await usage_store.usage_report(h.db, by="model", user="alice")
    assert {r["key"] for r in report} == {"claude-sonnet-5-5", "claude-haiku-5-5"}


async def test_a_resumed_turn_uses_the_threads_stored_settings(make_harness):
    h = make_harness([Reply((TextBlock("Saving."), ToolUseBlock("write_file", {"path": "a.txt", "content": "x"})),
                            "tool_use"), ok("Saved.")])
    await model_prefs.set_user_pref(h.db, user="alice", model="claude-haiku-5-5", effort="low")
    tid = await h.thread()
    rec = Recorder()
    # No decision yet: the turn suspends.
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="save a", emit=rec)
    assert done.stop_reason == "awaiting_approval"
    await model_prefs.set_user_pref(h.db, user="alice", model="claude-opus-5-5", effort="max")
    [card] = rec.of(ApprovalRequested)
    await approval_store.decide(h.db, approval_id=card.approval.id, decision="approved", decided_by="alice",
                                via="chat")
    await h.agent.resume(owner="alice", thread_id=tid, emit=Recorder())
    assert [sent(r) for r in h.brain.requests] == [("claude-haiku-5-5", {"effort": "low"})] * 2


def test_a_choice_the_api_would_refuse_is_refused_with_its_reason():
    prices = PriceTable.load()
    assert thread_model.check_choice("claude-sonnet-5-5", "max", prices=prices, thinking="adaptive") is None
    between = thread_model.check_choice("claude-sonnet-5-5", "xhigh", prices=prices, thinking="between_tools")
    assert between is not None and "effort `xhigh`" in between and "low, medium, high" in between
    opus = thread_model.check_choice("claude-opus-5-5", "low", prices=prices, thinking="between_tools")
    assert opus is not None and "does not accept `between_tools`" in opus
    assert "not one of the models" in str(thread_model.check_choice("claude-fable-5-2", "low", prices=prices,
                                                                      thinking="adaptive"))
    assert "effort `extreme`" in str(thread_model.check_choice("claude-haiku-5-5", "extreme", prices=prices,
                                                               thinking="adaptive"))
    # Only priced models with documented rules are offered.
    assert thread_model.chat_models(prices, "adaptive") == ["claude-haiku-5-5", "claude-opus-5-5",
                                                           "claude-sonnet-5-5"]
    assert thread_model.chat_models(prices, "between_tools") == ["claude-sonnet-5-5"]


async def test_a_stored_choice_that_became_invalid_falls_back_to_the_deployment(make_harness):
    h = make_harness([ok()], thinking="between_tools")
    # Stored while the deployment thought adaptively; between_tools refuses xhigh.
    await model_prefs.set_user_pref(h.db, user="alice", model="claude-sonnet-5-5", effort="xhigh")
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="hi",
        emit=deciding(h.agent, Recorder(), ScriptedApprover({})))
    [request] = h.brain.requests
    assert request["thinking"] == {"type": "between_tools"} and request["output_config"] == {"effort": "medium"}


async def test_the_budget_left_reads_today_and_this_month(db, settings):
    budget = Budget(db, PriceTable.load(), settings)
    await usage_store.set_budget(db, user="alice", daily_nanousd=500_000_000, monthly_nanousd=None)
    left = await budget.left(user="alice")
    assert left.line() == "$0.5000 left today (of $0.5000); $10.00 left this month (of $10.00)"


async def test_a_threads_settings_are_fetched_once_then_kept_per_database(make_harness, tmp_path):
    """Written once and never changed, so kept after the first sight: a tool turn used to read them at every
    model call and take a write transaction for them at every turn. Another database keeps its own."""
    from sqlalchemy import event

    from store.model_prefs import ThreadModelSettings
    from tests.conftest import open_test_db

    h = make_harness([Reply((TextBlock("Looking."), ToolUseBlock("list_files", {"path": "."})), "tool_use"),
                      ok("none"), Reply((TextBlock("Again."), ToolUseBlock("list_files", {"path": "."})), "tool_use"),
                      ok("still none")])
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="files?",
        emit=deciding(h.agent, Recorder(), ScriptedApprover({})))
    touched: list[str] = []

    def seen(conn, cursor, statement, *_):
        if "thread_model_settings" in statement:
            touched.append(statement)

    engines = h.db.read_engines + ([h.db._writer] if h.db._writer is not None else [])
    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        await h.agent.run_turn(owner="alice", thread_id=tid, text="files again?",
            emit=deciding(h.agent, Recorder(), ScriptedApprover({})))
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)
    assert touched == []
    assert [sent(r) for r in h.brain.requests][2:] == [sent(h.brain.requests[0])] * 2  # still the thread's own
    other = await open_test_db(tmp_path / "other")
    try:
        assert await model_prefs.thread_settings(other, thread_id=tid) is None  # not another database's
        from store import threads as thread_store

        assert await thread_store.ensure_thread(other, owner="alice", thread_id=tid)
        mine = ThreadModelSettings("claude-haiku-5-5", "low", "adaptive", "summarized")
        assert await model_prefs.fix_thread_settings(other, thread_id=tid, wanted=mine) == mine
        assert await model_prefs.thread_settings(h.db, thread_id=tid) != mine
    finally:
        await other.close()
