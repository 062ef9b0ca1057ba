"""Optional OpenTelemetry export of the trace, using the GenAI semantic conventions.

On only when OTEL_EXPORTER_OTLP_ENDPOINT is set (standard OTLP/HTTP env vars apply); otherwise nothing
is imported and nothing runs. Spans are built from the same records as the JSON trace lines, so the
two never disagree.
"""

from __future__ import annotations

import os
import time
from typing import Any

SERVICE = "tollgate"


class OtelExport:
    def __init__(self, tracer: Any, provider: Any = None) -> None:
        self._tracer = tracer
        self._provider = provider  # ours to flush and stop at shutdown (None: the caller owns it)

    @classmethod
    def from_env(cls) -> OtelExport | None:
        if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider.get_tracer(SERVICE), provider)

    def close(self) -> None:
        """Export the spans still batched (the processor sends every few seconds) and stop its thread: without
        this, the last turn's spans before a shutdown never reach the collector."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None

    def __call__(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        end_ns = int(float(record.get("ts", time.time())) * 1e9)
        common = {"tollgate.user": record.get("user", ""), "tollgate.thread": record.get("thread", ""),
                  "tollgate.turn": record.get("turn", "")}
        if kind == "model_call":
            model = str(record.get("model", ""))
            attrs = {**common, "gen_ai.operation.name": "chat", "gen_ai.system": "anthropic",
                     "gen_ai.request.model": model,
                     "gen_ai.usage.input_tokens": int(record.get("input_tokens") or 0)
                     + int(record.get("cache_write_tokens") or 0) + int(record.get("cache_read_tokens") or 0),
                     "gen_ai.usage.output_tokens": int(record.get("output_tokens") or 0),
                     "gen_ai.response.finish_reasons": [str(record.get("stop_reason") or "error")],
                     "tollgate.cost_nanousd": int(record.get("cost_nanousd") or 0)}
            self._span(f"chat {model}", end_ns, float(record.get("model_ms") or 0), attrs, record.get("error"))
        elif kind == "tool_call":
            attrs = {**common, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": record.get("tool", ""),
                     "gen_ai.tool.call.id": record.get("tool_use_id", "")}
            self._span(f"execute_tool {record.get('tool')}", end_ns, float(record.get("ms") or 0), attrs,
                       "tool error" if record.get("is_error") else None)
        elif kind == "approval":  # human time: its own span, never inside a latency span
            attrs = {**common, "tollgate.approval.status": record.get("status", ""),
                     "tollgate.approval.route": record.get("route", ""), "gen_ai.tool.name": record.get("tool", "")}
            self._span(f"approval {record.get('tool')}", end_ns, float(record.get("wait_ms") or 0), attrs, None)

    def _span(self, name: str, end_ns: int, duration_ms: float, attrs: dict[str, Any], error: Any) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = self._tracer.start_span(name, start_time=end_ns - int(duration_ms * 1e6), attributes=attrs)
        if error:
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end(end_time=end_ns)
