"""The demo model speaks the 5.x Messages API strictly: thinking, effort, bound signatures, and the 400s.

Everything goes through the real anthropic SDK over HTTP; every refusal a test provokes is declared with
`demo_refusals.expect(...)` (tests/conftest.py fails a test on any other).
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pytest

from fakeclaude import DemoModelServer, DemoSettings, Reply, ScriptedBrain, TextBlock, ToolUseBlock
from fakeclaude.thinking import UPDATES_BETA

SONNET, OPUS, HAIKU = "claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5"
FAST = DemoSettings(first_token_delay_s=0.0, tokens_per_second=0.0)
TOOLS: list[Any] = [{"name": "list_files", "description": "list", "input_schema": {"type": "object"}}]
SYSTEM = [{"type": "text", "text": "You are a test."}]
SUMMARIZED = {"type": "adaptive", "display": "summarized"}
BOUND = "Invalid `signature` in `thinking` block. The block is bound to a different conversation."


class Echo:
    """Answers every call: a tool call while the last user message is text, else a short text."""

    def respond(self, request: dict[str, Any]) -> Reply:
        last = request["messages"][-1]["content"]
        if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
            return Reply((TextBlock("Done."),))
        return Reply((TextBlock("Let me look."), ToolUseBlock("list_files", {})), stop_reason="tool_use")


@pytest.fixture
def server() -> Iterator[DemoModelServer]:
    with DemoModelServer(Echo(), FAST) as s:
        yield s


@pytest.fixture
async def sdk(server: DemoModelServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0)
    yield client
    await client.close()


def ask(text: str = "list my files") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


async def call(sdk: anthropic.AsyncAnthropic, messages: list[dict[str, Any]], **kw: Any) -> Any:
    args: dict[str, Any] = {"model": SONNET, "max_tokens": 2_000, "system": SYSTEM, "tools": TOOLS,
                            "messages": messages, "thinking": SUMMARIZED, "output_config": {"effort": "medium"}}
    args.update(kw)
    async with sdk.messages.stream(**args) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    return final, kinds


def dump(message: Any) -> list[dict[str, Any]]:
    return [b.model_dump(mode="json", exclude_none=True) for b in message.content]


async def tool_turn(sdk: anthropic.AsyncAnthropic, **kw: Any) -> list[dict[str, Any]]:
    """A full tool-use turn: ask, the answer with its call, the tool result, the final answer."""
    first, _ = await call(sdk, ask(), **kw)
    history = [*ask(), {"role": "assistant", "content": dump(first)},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[-1].id,
                                             "content": "a.txt"}]}]
    second, _ = await call(sdk, history, **kw)
    return [*history, {"role": "assistant", "content": dump(second)}]


async def test_stream_has_signed_thinking_and_a_progress_update_before_the_tool_call(sdk):
    final, kinds = await call(sdk, ask())
    assert [b.type for b in final.content] == ["thinking", "text", "thinking", "tool_use"]
    assert "thinking" in kinds and "signature" in kinds  # the SDK's ThinkingEvent and SignatureEvent
    reasoning, _, progress, _ = final.content
    assert reasoning.thinking and reasoning.signature and progress.thinking == "Next I'll use list_files."
    assert final.stop_reason == "tool_use"
    details = final.usage.output_tokens_details
    assert details.thinking_tokens == 40 + 12  # medium effort's reasoning + one progress update
    assert final.usage.output_tokens == details.thinking_tokens + 3 + 1  # + "Let me look." + "{}"


async def test_omitted_display_sends_empty_thinking_but_bills_it(sdk):
    final, kinds = await call(sdk, ask(), thinking={"type": "adaptive"})
    thinking = [b for b in final.content if b.type == "thinking"]
    assert [b.thinking for b in thinking] == ["", ""] and all(b.signature for b in thinking)
    assert "thinking" not in kinds and "signature" in kinds  # no thinking_delta, one signature_delta each
    assert final.usage.output_tokens_details.thinking_tokens == 52


async def test_effort_changes_how_much_it_thinks(sdk):
    spent = {}
    for effort in ("low", "medium", "high", "xhigh", "max"):
        final, _ = await call(sdk, ask(), output_config={"effort": effort})
        spent[effort] = final.usage.output_tokens_details.thinking_tokens
    assert spent["low"] < spent["medium"] < spent["high"] < spent["xhigh"] < spent["max"]
    final, _ = await call(sdk, ask(), thinking={"type": "between_tools"}, output_config={"effort": "high"})
    assert [b.type for b in final.content] == ["text", "thinking", "tool_use"]  # only between tools


async def test_thinking_counts_toward_max_tokens(sdk):
    final, _ = await call(sdk, ask(), max_tokens=30, output_config={"effort": "high"})
    assert final.stop_reason == "max_tokens" and [b.type for b in final.content] == ["thinking"]
    assert final.usage.output_tokens == final.usage.output_tokens_details.thinking_tokens == 30


async def test_blocks_sent_back_unchanged_are_accepted_and_moving_a_breakpoint_is_not_an_edit(sdk):
    history = await tool_turn(sdk)
    history[0]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    final, _ = await call(sdk, [*history, *ask("and again")])
    assert final.stop_reason == "tool_use"
    # Changing effort is not an edit either; dropping the thinking of a completed turn is allowed.
    await call(sdk, [*history, *ask("and again")], output_config={"effort": "low"})
    stripped = copy.deepcopy(history)
    for m in stripped:
        if m["role"] == "assistant":
            m["content"] = [b for b in m["content"] if b["type"] != "thinking"]
    await call(sdk, [*stripped, *ask("and again")])


@pytest.mark.parametrize("edit", ["earlier message", "system", "tools", "thinking text", "model"])
async def test_a_changed_prefix_invalidates_the_thinking_after_it(sdk, demo_refusals, edit):
    demo_refusals.expect(re.escape(BOUND))
    history = await tool_turn(sdk)
    kw: dict[str, Any] = {}
    if edit == "earlier message":
        history[0]["content"][0]["text"] = "list my files, please"
    elif edit == "system":
        kw["system"] = [{"type": "text", "text": "You are a changed test."}]
    elif edit == "tools":
        kw["tools"] = [*TOOLS, {"name": "read_file", "description": "r", "input_schema": {"type": "object"}}]
    elif edit == "thinking text":
        history[1]["content"][0]["thinking"] += " (edited)"
    else:
        kw["model"] = OPUS
    with pytest.raises(anthropic.BadRequestError) as caught:
        await call(sdk, [*history, *ask("and again")], **kw)
    message = caught.value.body["error"]["message"]
    assert message.startswith(f"messages.1.content.0: {BOUND}"), message


async def test_a_summary_that_rewrites_the_middle_and_replays_the_tail_is_refused(sdk, demo_refusals):
    # What a keep-the-tail summariser does: turn 1 replaced by a summary, turn 2 kept with its thinking.
    demo_refusals.expect(re.escape(BOUND))
    one = await tool_turn(sdk)
    two = await tool_turn(sdk)  # made after a different prefix than it will be replayed with
    both = [*one, *ask("second"), *[m for m in two[1:]]]
    with pytest.raises(anthropic.BadRequestError, match="bound to a different conversation"):
        await call(sdk, [*both, *ask("third")])


REFUSED = [
    # SDK 2.x no longer takes sampling parameters at all: sent raw, as an older client would.
    ({"extra_body": {"temperature": 0.5}}, "temperature: Extra inputs are not permitted"),
    ({"extra_body": {"top_p": 0.9}}, "top_p: Extra inputs are not permitted"),
    ({"extra_body": {"top_k": 5}}, "top_k: Extra inputs are not permitted"),
    ({"tool_choice": {"type": "any"}}, "forcing tool use"),
    ({"tool_choice": {"type": "tool", "name": "list_files"}}, "forcing tool use"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2_000}}, "`enabled` with `budget_tokens` is not supported"),
    ({"thinking": {"type": "disabled"}}, "`disabled` is not supported on claude-sonnet-5-5"),
    ({"model": OPUS, "thinking": {"type": "disabled"}}, "claude-opus-5-5 supports only `adaptive`"),
    ({"model": HAIKU, "thinking": {"type": "disabled"}, "output_config": {"effort": "max"}},
     "`disabled` is supported on claude-haiku-5-5 only at effort `high` or lower"),
    ({"thinking": {"type": "between_tools"}, "output_config": {"effort": "xhigh"}},
     "`between_tools` is supported only at effort `low`, `medium` or `high`"),
    ({"thinking": {"type": "between_tools", "display": "summarized"}}, "`between_tools` takes no other field"),
    ({"thinking": {"type": "adaptive", "display": "updates"}}, "requires the beta header"),
    ({"output_config": {"effort": "extreme"}}, "output_config.effort: Input should be"),
    ({"messages": [*ask(), {"role": "assistant", "content": "Sure, "}]}, "does not support assistant message prefill"),
    ({"system": [{"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}} for i in range(5)]},
     "A maximum of 4 blocks with cache_control may be provided. Found 5."),
]


@pytest.mark.parametrize(("change", "message"), REFUSED)
async def test_requests_the_api_refuses_get_its_400(sdk, demo_refusals, change, message):
    demo_refusals.expect(re.escape(message))
    change = dict(change)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await call(sdk, change.pop("messages", ask()), **change)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert message in caught.value.body["error"]["message"]


async def test_each_models_accepted_thinking(sdk):
    await call(sdk, ask(), model=HAIKU, thinking={"type": "disabled"}, output_config={"effort": "high"})
    await call(sdk, ask(), model=OPUS)
    final, _ = await call(sdk, ask(), thinking={"type": "adaptive", "display": "updates"},
                          extra_headers={"anthropic-beta": UPDATES_BETA})
    reasoning, _, progress, _ = final.content
    assert reasoning.thinking == "" and progress.thinking  # under `updates` only progress updates have text


async def test_cache_control_on_a_thinking_block_and_dropped_tool_turn_thinking_are_refused(sdk, demo_refusals):
    demo_refusals.expect("cache_control cannot be set on a thinking block")
    demo_refusals.expect("must be sent back with its `thinking` blocks")
    first, _ = await call(sdk, ask())
    answer = dump(first)
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": answer[-1]["id"], "content": "x"}]}
    marked = copy.deepcopy(answer)
    marked[0]["cache_control"] = {"type": "ephemeral"}
    with pytest.raises(anthropic.BadRequestError, match=re.escape("messages.1.content.0.cache_control")):
        await call(sdk, [*ask(), {"role": "assistant", "content": marked}, result])
    dropped = [b for b in answer if b["type"] != "thinking"]
    with pytest.raises(anthropic.BadRequestError, match=re.escape("messages.1.content: the assistant turn")):
        await call(sdk, [*ask(), {"role": "assistant", "content": dropped}, result])


async def test_refusal_and_context_window_stop_reasons(demo_refusals):
    brain = ScriptedBrain([Reply((TextBlock("No."),), stop_reason="refusal"), Reply((TextBlock("x" * 4_000),))])
    with DemoModelServer(brain, DemoSettings(first_token_delay_s=0, tokens_per_second=0,
                                             context_window=600)) as server:
        client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0)
        final, _ = await call(client, ask())
        assert final.stop_reason == "refusal" and final.stop_details.category == "general_harms"
        final, _ = await call(client, ask())
        assert final.stop_reason == "model_context_window_exceeded"
        demo_refusals.expect("prompt is too long")
        with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
            await call(client, ask("y" * 3_000))
        await client.close()


async def test_count_tokens_runs_the_same_checks(sdk, demo_refusals):
    history = await tool_turn(sdk)
    counted = await sdk.messages.count_tokens(model=SONNET, system=SYSTEM, tools=TOOLS, messages=history[:3])
    assert counted.input_tokens > 0
    demo_refusals.expect(re.escape(BOUND))
    history[0]["content"][0]["text"] = "changed"
    with pytest.raises(anthropic.BadRequestError, match="bound to a different conversation"):
        await sdk.messages.count_tokens(model=SONNET, system=SYSTEM, tools=TOOLS, messages=history[:3])


async def test_a_change_of_effort_invalidates_message_level_cache_entries(sdk):
    marked = [{"role": "user", "content": [{"type": "text", "text": "word " * 800,
                                            "cache_control": {"type": "ephemeral"}}]}]
    await call(sdk, marked)
    again, _ = await call(sdk, marked)
    assert again.usage.cache_read_input_tokens > 0
    other, _ = await call(sdk, marked, output_config={"effort": "low"})
    assert other.usage.cache_read_input_tokens == 0 and other.usage.cache_creation_input_tokens > 0


async def test_the_refusal_registry_sees_every_unexpected_400(sdk, demo_refusals):
    # The autouse fixture fails any test that leaves an unexpected refusal; here one is made, seen, then
    # declared, so this test passes while proving the check would have caught it.
    with pytest.raises(anthropic.BadRequestError):
        await call(sdk, ask(), thinking={"type": "disabled"})
    [(status, message, path)] = demo_refusals.unexpected()
    assert (status, path) == (400, "/v1/messages") and "`disabled` is not supported" in message
    demo_refusals.expect("`disabled` is not supported")
    assert demo_refusals.unexpected() == []
