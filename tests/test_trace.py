"""The trace log: one JSON line per model call, tool call and decision; sums agree with the database."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from agent.approvals import Approved
from agent.trace import TraceLog
from fakeclaude import Reply, TextBlock, ToolUseBlock
from store.models import MODEL_CALLS, TOOL_CALLS
from tests.conftest import Recorder, ScriptedApprover, deciding

STEPS = [
    Reply(blocks=(TextBlock("Looking."), ToolUseBlock("list_files", {}),
                  ToolUseBlock("write_file", {"path": "notes/a.txt", "content": "secret words"})),
          stop_reason="tool_use"),
    Reply(blocks=(TextBlock("Done."),)),
]


async def run(make_harness, tmp_path, content: bool):
    h = make_harness(list(STEPS))
    path = tmp_path / f"trace-{content}.jsonl"
    h.agent.deps.trace = TraceLog(path, content=content)
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="go",
                           emit=deciding(h.agent, Recorder(), ScriptedApprover({"write_file": Approved()})))
    return h, [json.loads(line) for line in path.read_text().splitlines()]


async def test_lines_parse_and_sums_match_the_database(make_harness, tmp_path):
    h, lines = await run(make_harness, tmp_path, content=False)
    kinds = [line["kind"] for line in lines]
    assert kinds.count("model_call") == 2 and kinds.count("tool_call") == 2 and kinds.count("approval") == 1
    async with h.db.read() as conn:
        db_cost = (await conn.execute(select(func.sum(MODEL_CALLS.c.cost_nanousd)))).scalar_one()
        db_out = (await conn.execute(select(func.sum(MODEL_CALLS.c.output_tokens)))).scalar_one()
        db_tool_ms = (await conn.execute(select(func.sum(TOOL_CALLS.c.duration_ms)))).scalar_one()
    calls = [line for line in lines if line["kind"] == "model_call"]
    assert sum(c["cost_nanousd"] for c in calls) == db_cost > 0
    assert sum(c["output_tokens"] for c in calls) == db_out
    tools = [line for line in lines if line["kind"] == "tool_call"]
    assert abs(sum(t["ms"] for t in tools) - db_tool_ms) < 0.01
    assert all(c["user"] == "alice" and c["turn"] and c["model_ms"] > 0 for c in calls)
    [decision] = [line for line in lines if line["kind"] == "approval"]
    assert decision["status"] == "approved" and decision["wait_ms"] >= 0


async def test_message_content_stays_out_unless_asked_for(make_harness, tmp_path):
    _, quiet = await run(make_harness, tmp_path, content=False)
    assert "secret words" not in json.dumps(quiet) and all("content" not in line for line in quiet)
    _, loud = await run(make_harness, tmp_path, content=True)
    assert any("content" in line for line in loud if line["kind"] == "tool_call")


async def test_opentelemetry_spans_follow_the_genai_conventions(make_harness, tmp_path, monkeypatch):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agent.otel import OtelExport

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert OtelExport.from_env() is None  # off unless configured
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    h = make_harness(list(STEPS))
    h.agent.deps.trace = TraceLog(tmp_path / "t.jsonl", sinks=[OtelExport(provider.get_tracer("test"))])
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="go",
                           emit=deciding(h.agent, Recorder(), ScriptedApprover({"write_file": Approved()})))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    chat = spans["chat claude-sonnet-5-5"]
    assert chat.attributes["gen_ai.operation.name"] == "chat" and chat.attributes["gen_ai.system"] == "anthropic"
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert spans["execute_tool write_file"].attributes["gen_ai.tool.name"] == "write_file"
    assert "approval write_file" in spans
    assert chat.end_time > chat.start_time
    provider.shutdown()
