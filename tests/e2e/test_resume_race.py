"""Opening a thread by its URL resumes it even when the page's first socket raced ahead of the thread id.

Chainlit's page connects as soon as its config loads; the thread page asks for the thread a moment later, and
the client reconnects with the same session id and the thread id. When the first, thread-less socket reached
the server first (a loaded machine, a slow config fetch), chainlit restored that empty session and dropped the
thread id: the page showed a spinner forever. Browserless, against the real chainlit server, both orders."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.e2e.conftest import Server
from tests.e2e.test_isolation import Chat

ANSWER = re.compile(r"this answer \$")


async def wait_for_event(chat: Chat, name: str, timeout: float = 30) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            for event, data in chat.events:
                if event == name:
                    return data
            chat.changed.clear()
            await chat.changed.wait()


async def a_finished_thread(server: Server) -> tuple[str, str]:
    """(the access token, a thread of alice's with one finished turn)"""
    first = Chat(server.url, "alice")
    await first.login()
    await first.connect()
    await first.send("list my files")
    await first.wait_for(ANSWER)
    started = await wait_for_event(first, "first_interaction")  # the thread id the server gave the session
    await first.close()
    return first.token, started["thread_id"]


async def test_a_thread_asked_for_on_the_second_socket_of_a_session_is_resumed(server: Server) -> None:
    token, thread_id = await a_finished_thread(server)
    early = Chat(server.url, "alice", token=token)
    await early.connect()  # the page's first socket: no thread id yet
    await wait_for_event(early, "chat_settings")  # the server ran on_chat_start for it
    await early.close()
    page = Chat(server.url, "alice", token=token, session_id=early.session_id)
    await page.connect(thread_id=thread_id)
    resumed = await wait_for_event(page, "resume_thread")
    assert resumed["id"] == thread_id
    assert any(ANSWER.search(str(step.get("output", ""))) for step in resumed["steps"])
    await page.close()


async def test_the_thread_id_on_the_first_socket_resumes_as_before(server: Server) -> None:
    token, thread_id = await a_finished_thread(server)
    page = Chat(server.url, "alice", token=token)
    await page.connect(thread_id=thread_id)
    resumed = await wait_for_event(page, "resume_thread")
    assert resumed["id"] == thread_id
    await page.close()
