"""The floor: a bare Chainlit + anthropic SDK app doing the same visible turn as Tollgate, with nothing else.

One turn: stream the model's first answer into a message (deltas batched every 50 ms, as Tollgate does), one
`list_files` tool step (input and output shown), a second model call with the tool result streamed into a second
message, then the usage line as that message's footer (metadata "usage", which the load client waits for).
No persistence (no data layer, history in the session), no budgets, no approvals, no count_tokens, no trace.
With BENCH_FLOOR_THINKING=1 (scale_out.py's config "floorthink") it also shows the model's thinking as Tollgate does
since #14: it asks for summarized thinking and streams it, batched the same way, into a "Thinking" step per call.
Login: any user name with bench/concurrency_server.py's PASSWORD (a plain comparison, no argon2).

    CHAINLIT_AUTH_SECRET=... ANTHROPIC_BASE_URL=... ANTHROPIC_API_KEY=... chainlit run bench/floor_app.py --headless
Driven by bench/scale_out.py (config "floor").
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anthropic
import chainlit as cl

PASSWORD = "orchard-apple-8"
MODEL = "claude-sonnet-5-5"
BATCH_S = 0.05
SHOW_THINKING = os.environ.get("BENCH_FLOOR_THINKING") == "1"
WORKSPACES = Path(os.environ.get("BENCH_FLOOR_WORKSPACES", "/tmp/tollgate-floor-workspaces"))
TOOLS: list[dict[str, Any]] = [{
    "name": "list_files",
    "description": "List the files and folders in a directory of your workspace. Folders end with '/'.",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
}]
client = anthropic.AsyncAnthropic()


@cl.password_auth_callback
async def auth(username: str, password: str) -> cl.User | None:
    return cl.User(identifier=username) if password == PASSWORD else None


def list_files(user: str, path: str) -> str:
    root = WORKSPACES / user
    root.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in (root / path).resolve().iterdir())
    return "\n".join(names) or f"(empty directory: {path})"


class Batched:
    """Deltas sent at most every BATCH_S, the first at once."""

    def __init__(self, send: Any) -> None:
        self.send, self.pending, self.last = send, "", 0.0

    async def add(self, text: str) -> None:
        self.pending += text
        if time.monotonic() - self.last >= BATCH_S:
            await self.flush()

    async def flush(self) -> None:
        if self.pending:
            await self.send(self.pending)
            self.pending, self.last = "", time.monotonic()


async def stream_answer(messages: list[dict[str, Any]]) -> tuple[Any, cl.Message | None]:
    """One model call streamed into one message; returns the final message and the chainlit message."""
    msg: cl.Message | None = None
    thought: cl.Step | None = None
    answer = Batched(lambda text: msg.stream_token(text) if msg is not None else None)
    thinking = Batched(lambda text: thought.stream_token(text) if thought is not None else None)
    extra: dict[str, Any] = {"thinking": {"type": "adaptive", "display": "summarized"}} if SHOW_THINKING else {}
    async with client.messages.stream(model=MODEL, max_tokens=1024, messages=messages, tools=TOOLS,  # type: ignore[arg-type]
                                      **extra) as s:
        async for event in s:
            if event.type == "thinking" and SHOW_THINKING:
                if thought is None:
                    thought = cl.Step(name="Thinking", type="llm")
                    await thought.send()
                await thinking.add(event.thinking)
            elif event.type == "text":
                if msg is None:
                    msg = cl.Message(content="")
                await answer.add(event.text)
        final = await s.get_final_message()
    if thought is not None:
        await thinking.flush()
        await thought.update()
    if msg is not None:
        await answer.flush()
        await msg.send()
    return final, msg


@cl.on_message
async def on_message(message: cl.Message) -> None:
    user = cl.user_session.get("user")
    history: list[dict[str, Any]] = cl.user_session.get("history") or []
    history.append({"role": "user", "content": message.content})
    usage_in = usage_out = 0
    answer: cl.Message | None = None
    for _ in range(4):  # a tool step, then the answer (bounded like any agent loop)
        final, msg = await stream_answer(history)
        answer = msg or answer
        usage_in += final.usage.input_tokens
        usage_out += final.usage.output_tokens
        history.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]})
        calls = [b for b in final.content if b.type == "tool_use"]
        if not calls:
            break
        results = []
        for call in calls:
            async with cl.Step(name=call.name, type="tool", show_input="json") as step:
                step.input = call.input
                step.output = list_files(user.identifier if user else "anon", str(call.input.get("path", ".")))
            results.append({"type": "tool_result", "tool_use_id": call.id, "content": step.output})
        history.append({"role": "user", "content": results})
    cl.user_session.set("history", history)
    line = f"{usage_in:,} tokens in / {usage_out:,} out"
    if answer is None:
        await cl.Message(content=f"---\n\n*{line}*", metadata={"usage": line}).send()
        return
    answer.content = f"{answer.content}\n\n---\n\n*{line}*"
    answer.metadata = {**(answer.metadata or {}), "usage": line}
    await answer.update()
