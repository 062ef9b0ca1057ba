"""Every model API fault kind, injected by the scripted server, surfaces as a clear notice and loses nothing."""

from __future__ import annotations

import pytest

from agent.events import Notice
from fakeclaude import Fault, Reply, TextBlock
from store import threads as thread_store
from store.models import MODEL_CALLS
from tests.conftest import APPROVE_ALL, Recorder, deciding

OK = Reply(blocks=(TextBlock("Recovered fine."),))


def fail(status: int, error_type: str) -> Reply:
    return Reply(fault=Fault(kind="http", status=status, error_type=error_type, message=f"injected {status}"))


@pytest.mark.parametrize(("status", "error_type"), [(429, "rate_limit_error"), (529, "overloaded_error"),
                                                    (500, "api_error")])
async def test_transient_errors_are_retried_by_the_sdk(make_harness, status, error_type):
    h = make_harness([fail(status, error_type), OK])
    tid = await h.thread()
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="hi",
                                  emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    h.brain.assert_done()
    assert done.stop_reason == "end_turn"


@pytest.mark.parametrize(("status", "error_type", "words", "retryable"), [
    (401, "authentication_error", "ANTHROPIC_API_KEY is missing or invalid", False),
    (400, "invalid_request_error", "rejected the request", False),
    (529, "overloaded_error", "overloaded", True),
    (429, "rate_limit_error", "rate limiting", True),
])
async def test_final_errors_say_what_is_wrong(make_harness, status, error_type, words, retryable):
    attempts = 1 if status in (400, 401) else 3  # the SDK retries 429/529 twice before giving up
    h = make_harness([fail(status, error_type)] * attempts)
    tid = await h.thread()
    rec = Recorder()
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="hi", emit=deciding(h.agent, rec, APPROVE_ALL))
    h.brain.assert_done()
    assert done.stop_reason == "api_error"
    [notice] = [n for n in rec.of(Notice) if n.kind == "api_error"]
    assert words in notice.message and "Traceback" not in notice.message
    assert notice.retryable is retryable
    stored = await thread_store.load_messages(h.db, owner="alice", thread_id=tid)
    assert stored[-1].role == "user"  # the user's message is kept for a retry
    async with h.db.read() as conn:
        statuses = [r.status for r in await conn.execute(MODEL_CALLS.select())]
    assert "reserved" not in statuses  # no reservation leaks


async def test_cut_stream_keeps_the_text_and_retry_continues(make_harness):
    h = make_harness([Reply(blocks=(TextBlock("Half of a sentence that"),), fault=Fault(kind="cut", after_blocks=1)),
                      OK])
    tid = await h.thread()
    rec = Recorder()
    done = await h.agent.run_turn(owner="alice", thread_id=tid, text="hi", emit=deciding(h.agent, rec, APPROVE_ALL))
    assert done.stop_reason == "api_error"
    stored = await thread_store.load_messages(h.db, owner="alice", thread_id=tid)
    assert stored[-1].incomplete and "Half of a sentence" in stored[-1].content[0]["text"]
    again = await h.agent.retry(owner="alice", thread_id=tid, emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    assert again is not None and again.stop_reason == "end_turn"
    h.brain.assert_done()
    # the half answer stays in the history but not in the model's context
    assert [m["role"] for m in h.brain.requests[-1]["messages"]] == ["user"]
