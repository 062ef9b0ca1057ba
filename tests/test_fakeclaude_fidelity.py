"""The fake's streams follow the event grammar of real recorded API streams.

Reference: the anthropic SDK's own recorded transcripts (anthropics/anthropic-sdk-python,
tests/lib/streaming/fixtures/basic_response.txt, tool_use_response.txt, ...; not vendored here, they are
not part of the installed SDK). What they show, and what this test holds the fake to: message_start
carries an empty content list, null stop_reason/stop_sequence and usage with input_tokens, output_tokens,
cache_creation_input_tokens and cache_read_input_tokens; `ping` may come between events; each block is
content_block_start (index 0, 1, ... in order) + deltas of its own type + content_block_stop; a tool_use
block starts with input {} and its input_json_delta pieces concatenate to the JSON input; message_delta
carries stop_reason and usage.output_tokens; message_stop is last.
"""

from __future__ import annotations

import json

import httpx
import pytest

from fakeclaude import DemoModelServer, DemoSettings, Reply, ScriptedBrain, TextBlock, ToolUseBlock

FAST = DemoSettings(first_token_delay_s=0.0, tokens_per_second=0.0)
DELTA_OF = {"text": "text_delta", "tool_use": "input_json_delta", "thinking": ("thinking_delta", "signature_delta")}


def events(raw: str) -> list[tuple[str, dict]]:
    out = []
    for frame in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]  # the SSE event name repeats the JSON type
        out.append((lines["event"], data))
    return out


@pytest.mark.parametrize("reply", [
    Reply(blocks=(TextBlock("Hello there, how can I help?"),)),
    Reply(blocks=(TextBlock("I'll check the weather in Paris."), ToolUseBlock("get_weather", {"location": "Paris"})),
          stop_reason="tool_use"),
], ids=["basic", "tool_use"])
def test_the_fake_streams_like_the_recorded_api(reply: Reply) -> None:
    with DemoModelServer(ScriptedBrain([reply]), FAST) as server:
        raw = httpx.post(server.base_url + "/v1/messages",
                         headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                         json={"model": "claude-sonnet-5-5", "max_tokens": 512, "stream": True,
                               "tools": [{"name": "get_weather", "description": "Weather.",
                                          "input_schema": {"type": "object"}}],
                               "messages": [{"role": "user", "content": "weather?"}]}).text
    seq = [e for e in events(raw) if e[0] != "ping"]
    (first, start), *body, (delta_name, delta), (last, _stop) = seq
    assert (first, delta_name, last) == ("message_start", "message_delta", "message_stop")
    message = start["message"]
    assert message["content"] == [] and message["stop_reason"] is None and message["stop_sequence"] is None
    assert {"input_tokens", "output_tokens", "cache_creation_input_tokens",
            "cache_read_input_tokens"} <= message["usage"].keys()
    assert delta["delta"]["stop_reason"] == reply.stop_reason and delta["usage"]["output_tokens"] > 0
    blocks, i = [], 0
    while i < len(body):
        name, ev = body[i]
        assert name == "content_block_start" and ev["index"] == len(blocks)
        block = ev["content_block"]
        parts = []
        i += 1
        while body[i][0] == "content_block_delta":
            d = body[i][1]
            assert d["index"] == ev["index"]
            expected = DELTA_OF[block["type"]]
            assert d["delta"]["type"] in (expected if isinstance(expected, tuple) else (expected,))
            parts.append(d["delta"].get("partial_json") or d["delta"].get("text") or "")
            i += 1
        assert body[i] == ("content_block_stop", {"type": "content_block_stop", "index": ev["index"]})
        i += 1
        if block["type"] == "tool_use":
            assert block["input"] == {} and block["id"].startswith("toolu_")
            assert json.loads("".join(parts)) == {"location": "Paris"}
        blocks.append((block["type"], "".join(parts)))
    texts = [t for kind, t in blocks if kind == "text"]
    assert texts == [b.text for b in reply.blocks if isinstance(b, TextBlock)]
