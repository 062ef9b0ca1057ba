"""The fake's streams follow the event grammar of the Messages API's recorded streams.

Reference: the anthropic SDK's own recorded stream transcripts, vendored in tests/data/real_streams/ (source
and commit in its README). One checker (`check_stream`) reads both the recorded transcripts and the fake's
streams, and the fake must produce the same shapes as the recording of the same kind of answer.

The grammar: message_start first, with an empty content list, null stop_reason/stop_sequence and usage with
input_tokens and output_tokens; `ping` anywhere between it and message_stop; each block is content_block_start
(index 0, 1, ... in order, its content empty: text "", tool_use input {}, thinking "" with signature "") +
deltas of its own type with its index + content_block_stop with its index; a thinking block's thinking_delta
pieces come before exactly one signature_delta; a tool_use block's input_json_delta pieces concatenate to a
JSON object; message_delta carries stop_reason and usage.output_tokens; message_stop is last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakeclaude import DemoModelServer, DemoSettings, Reply, ScriptedBrain, TextBlock, ToolUseBlock

REAL = Path(__file__).parent / "data" / "real_streams"
FAST = DemoSettings(first_token_delay_s=0.0, tokens_per_second=0.0)
START_OF = {"text": {"text": ""}, "tool_use": {"input": {}}, "thinking": {"thinking": "", "signature": ""}}
DELTAS_OF = {"text": ("text_delta",), "tool_use": ("input_json_delta",),
             "thinking": ("thinking_delta", "signature_delta")}
STOP_REASONS = ("end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
                "model_context_window_exceeded")


class GrammarError(AssertionError):
    pass


@dataclass(frozen=True)
class Block:
    type: str
    deltas: tuple[str, ...]  # the delta types in order, runs collapsed: ("thinking_delta", "signature_delta")
    text: str  # text, thinking or the tool's JSON input, concatenated


@dataclass(frozen=True)
class Stream:
    blocks: tuple[Block, ...]
    stop_reason: str
    start_usage: dict[str, Any]
    delta_usage: dict[str, Any]
    stop_details: dict[str, Any] | None

    @property
    def shape(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple((b.type, b.deltas) for b in self.blocks)


def frames(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """SSE frames as (event name, JSON data); the name must repeat the data's type."""
    out = []
    for frame in raw.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.strip().splitlines())
        data = json.loads(fields["data"])
        if fields.get("event") != data.get("type"):
            raise GrammarError(f"event {fields.get('event')!r} carries data of type {data.get('type')!r}")
        out.append((fields["event"], data))
    return out


def _need(ok: bool, why: str) -> None:
    if not ok:
        raise GrammarError(why)


def _int_fields(usage: object, names: tuple[str, ...], where: str) -> dict[str, Any]:
    _need(isinstance(usage, dict), f"{where}: no usage")
    assert isinstance(usage, dict)
    for name in names:
        _need(isinstance(usage.get(name), int), f"{where}: usage.{name} missing or not an integer")
    return usage


def check_stream(events: list[tuple[str, dict[str, Any]]]) -> Stream:
    """The stream's blocks and stop, or GrammarError naming the first thing out of place."""
    _need(bool(events) and events[0][0] == "message_start", "the stream does not begin with message_start")
    body = [e for e in events[1:] if e[0] != "ping"]
    message = events[0][1]["message"]
    _need(message.get("content") == [] and message.get("stop_reason") is None
          and message.get("stop_sequence") is None, "message_start: content, stop_reason or stop_sequence set")
    start_usage = _int_fields(message.get("usage"), ("input_tokens", "output_tokens"), "message_start")
    blocks: list[Block] = []
    i = 0
    while i < len(body) and body[i][0] == "content_block_start":
        ev = body[i][1]
        index, block = ev.get("index"), ev.get("content_block") or {}
        _need(index == len(blocks), f"content_block_start: index {index}, expected {len(blocks)}")
        kind = block.get("type")
        _need(kind in START_OF, f"block {index}: unknown type {kind!r}")
        _need(all(block.get(k) == v for k, v in START_OF[kind].items()), f"block {index}: starts with content")
        if kind == "tool_use":
            _need(str(block.get("id", "")).startswith("toolu_") and bool(block.get("name")),
                  f"block {index}: tool_use without id or name")
        deltas: list[str] = []
        parts: list[str] = []
        signatures = 0
        i += 1
        while i < len(body) and body[i][0] == "content_block_delta":
            d = body[i][1]
            _need(d.get("index") == index, f"block {index}: a delta for index {d.get('index')}")
            dtype = d["delta"].get("type")
            _need(dtype in DELTAS_OF[kind], f"block {index} ({kind}): delta of type {dtype!r}")
            signatures += dtype == "signature_delta"
            if not deltas or deltas[-1] != dtype:
                deltas.append(dtype)
            parts.append(d["delta"].get("text") or d["delta"].get("partial_json") or d["delta"].get("thinking") or "")
            i += 1
        _need(i < len(body) and body[i] == ("content_block_stop", {"type": "content_block_stop", "index": index}),
              f"block {index}: not closed by its content_block_stop")
        i += 1
        if kind == "thinking":
            _need(deltas in (["signature_delta"], ["thinking_delta", "signature_delta"])
                  and signatures == 1,
                  f"block {index}: thinking must end with exactly one signature_delta, got {deltas}")
        if kind == "tool_use":
            try:
                tool_input = json.loads("".join(parts) or "{}")
            except json.JSONDecodeError:
                tool_input = None
            _need(isinstance(tool_input, dict), f"block {index}: input is not a JSON object")
        blocks.append(Block(kind, tuple(deltas), "".join(parts)))
    _need(i < len(body) and body[i][0] == "message_delta", "the blocks are not followed by message_delta")
    delta = body[i][1]
    stop = delta.get("delta", {}).get("stop_reason")
    _need(stop in STOP_REASONS, f"message_delta: stop_reason {stop!r}")
    delta_usage = _int_fields(delta.get("usage"), ("output_tokens",), "message_delta")
    _need(body[i + 1:] == [("message_stop", {"type": "message_stop"})] and events[-1][0] == "message_stop",
          "message_stop is not the one last event")
    return Stream(tuple(blocks), stop, start_usage, delta_usage, delta["delta"].get("stop_details"))


def real(name: str) -> Stream:
    return check_stream(frames((REAL / name).read_text()))


def fake_stream(reply: Reply, *, model: str = "claude-haiku-5-5", thinking: dict[str, Any] | None = None) -> Stream:
    body: dict[str, Any] = {"model": model, "max_tokens": 512, "stream": True,
                            "tools": [{"name": "get_weather", "description": "Weather.",
                                       "input_schema": {"type": "object"}}],
                            "messages": [{"role": "user", "content": "weather?"}],
                            "thinking": thinking or {"type": "disabled"}}
    with DemoModelServer(ScriptedBrain([reply]), FAST) as server:
        raw = httpx.post(server.base_url + "/v1/messages",
                         headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}, json=body).text
    return check_stream(frames(raw))


def test_every_vendored_transcript_passes_the_checker() -> None:
    names = sorted(p.name for p in REAL.iterdir() if p.suffix in (".txt", ".sse"))
    assert len(names) == 5
    for name in names:
        assert real(name).blocks, name


def test_a_text_answer_streams_like_the_recording() -> None:
    recorded = real("basic_response.txt")
    fake = fake_stream(Reply(blocks=(TextBlock("Hello there, how can I help?"),)))
    assert fake.shape == recorded.shape == (("text", ("text_delta",)),)
    assert fake.stop_reason == recorded.stop_reason == "end_turn"
    assert fake.blocks[0].text == "Hello there, how can I help?"
    assert recorded.start_usage.keys() <= fake.start_usage.keys()
    assert recorded.delta_usage.keys() <= fake.delta_usage.keys()
    # What the 5.x API adds (and the SDK's 5.x recording shows): cache counters at the start, the thinking
    # share of the output at the end.
    assert {"cache_creation_input_tokens", "cache_read_input_tokens"} <= fake.start_usage.keys()
    assert "output_tokens_details" in real("fable-stream-b-fallback.sse").delta_usage
    assert "output_tokens_details" in fake.delta_usage


def test_a_tool_call_streams_like_the_recording() -> None:
    recorded = real("tool_use_response.txt")
    fake = fake_stream(Reply(blocks=(TextBlock("I'll check the weather in Paris."),
                                     ToolUseBlock("get_weather", {"location": "Paris"})), stop_reason="tool_use"))
    assert fake.shape == recorded.shape == (("text", ("text_delta",)), ("tool_use", ("input_json_delta",)))
    assert fake.stop_reason == recorded.stop_reason == "tool_use"
    assert json.loads(fake.blocks[1].text) == json.loads(recorded.blocks[1].text) == {"location": "Paris"}


def test_a_thinking_answer_streams_like_the_recording() -> None:
    recorded = real("fable-stream-a-refusal.sse")
    fake = fake_stream(Reply(blocks=(TextBlock("An eclipse is the Moon's shadow on the Earth."),)),
                       model="claude-sonnet-5-5", thinking={"type": "adaptive", "display": "summarized"})
    assert fake.shape == recorded.shape == (("thinking", ("thinking_delta", "signature_delta")),
                                            ("text", ("text_delta",)))
    # Under the default display (omitted) the block keeps its shape with no thinking text: only the signature.
    omitted = fake_stream(Reply(blocks=(TextBlock("Hi."),)), model="claude-sonnet-5-5",
                          thinking={"type": "adaptive"})
    assert omitted.shape == (("thinking", ("signature_delta",)), ("text", ("text_delta",)))


def test_a_refusal_streams_like_the_recording() -> None:
    recorded = real("refusal_response.txt")
    details = {"type": "refusal", "category": "cyber", "explanation": "This request was refused due to policy."}
    fake = fake_stream(Reply(stop_reason="refusal", stop_details=details))
    assert fake.stop_reason == recorded.stop_reason == "refusal"
    assert fake.stop_details == recorded.stop_details == details
    assert all(b.type == "text" for b in fake.blocks)


def _broken(mutate: Any) -> list[tuple[str, dict[str, Any]]]:
    recorded = frames((REAL / "tool_use_response.txt").read_text())
    events = [(name, json.loads(json.dumps(data))) for name, data in recorded]  # a deep copy to break
    mutate(events)
    return events


def _find(events: list[tuple[str, dict[str, Any]]], name: str, nth: int = 0) -> int:
    return [i for i, e in enumerate(events) if e[0] == name][nth]


@pytest.mark.parametrize(("mutate", "why"), [
    (lambda ev: ev.pop(_find(ev, "content_block_stop")), "not closed"),
    (lambda ev: ev[_find(ev, "content_block_start", 1)][1].update(index=2), "index 2, expected 1"),
    (lambda ev: ev[_find(ev, "content_block_delta")][1]["delta"].update(type="input_json_delta"), "delta of type"),
    (lambda ev: ev[_find(ev, "content_block_delta")][1].update(index=1), "a delta for index 1"),
    (lambda ev: ev[0][1]["message"]["usage"].pop("input_tokens"), "usage.input_tokens"),
    (lambda ev: ev[_find(ev, "message_delta")][1].pop("usage"), "message_delta: no usage"),
    (lambda ev: ev.pop(), "message_stop"),
    (lambda ev: ev.append(("ping", {"type": "ping"})), "message_stop"),
    (lambda ev: ev.pop(0), "begin with message_start"),
    (lambda ev: ev[_find(ev, "content_block_start", 1)][1]["content_block"].update(input={"a": 1}),
     "starts with content"),
    (lambda ev: ev[_find(ev, "content_block_delta", 6)][1]["delta"].update(partial_json="]"), "JSON"),
], ids=["unclosed", "index_gap", "delta_type", "delta_index", "start_usage", "delta_usage", "no_stop",
        "after_stop", "no_start", "started_full", "bad_json"])
def test_the_checker_rejects_a_broken_stream(mutate: Any, why: str) -> None:
    check_stream(_broken(lambda ev: None))  # the unbroken one passes
    with pytest.raises(GrammarError, match=why):
        check_stream(_broken(mutate))


def test_the_checker_rejects_a_thinking_block_without_its_one_signature() -> None:
    events = frames((REAL / "fable-stream-a-refusal.sse").read_text())
    signature = next(i for i, e in enumerate(events) if e[0] == "content_block_delta"
                     and e[1]["delta"]["type"] == "signature_delta")
    with pytest.raises(GrammarError, match="exactly one signature_delta"):
        check_stream(events[:signature] + events[signature + 1:])
    with pytest.raises(GrammarError, match="exactly one signature_delta"):
        check_stream([*events[:signature + 1], events[signature], *events[signature + 1:]])
