"""The model's thinking streams to the browser batched like the answer: at most one socket update per interval.

Claude 5.x thinks before answering and between tools; unbatched, every thinking delta was a socket event of
its own (≈ 20 a turn against the demo model, each encoded, framed and compressed: a measured share of the
server's CPU per turn, docs/performance.md). Browserless, against the real server, with an interval no turn
reaches (60 s): each thinking block then gets its first delta at once and the rest in one flush when it ends,
and the step still ends holding the whole thinking."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, serving
from tests.e2e.test_isolation import Chat
from tests.e2e.test_resume_race import ANSWER


@pytest.fixture(scope="module")
def slow_flush_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("think") / "data", {"TOLLGATE_STREAM_INTERVAL_MS": "60000"}) as srv:
        yield srv


async def test_thinking_deltas_reach_the_socket_batched_and_whole(slow_flush_server: Server, tmp_path: Path) -> None:
    chat = Chat(slow_flush_server.url, "alice")
    await chat.login()
    await chat.connect()
    await chat.send("list my files")
    await chat.wait_for(ANSWER)
    thinking_ids = {d["id"] for e, d in chat.events
                    if e in ("new_message", "update_message") and d.get("name") in ("Thinking…", "Thought")}
    assert thinking_ids, "the demo model thinks before the tool and before the answer"
    for step_id in thinking_ids:
        # chainlit sends a step's first streamed text as stream_start (the step, its output so far), the rest
        # as stream_token events
        tokens = [d.get("output") if e == "stream_start" else d["token"] for e, d in chat.events
                  if e in ("stream_start", "stream_token") and d.get("id") == step_id]
        assert 1 <= len(tokens) <= 2, (step_id, len(tokens))  # the first delta, then one flush at the end
        ended = [d for e, d in chat.events if e == "update_message" and d.get("id") == step_id]
        assert ended and ended[-1]["name"] == "Thought"
        assert "".join(tokens) == ended[-1]["output"]  # what streamed is the whole thinking
    await chat.close()
