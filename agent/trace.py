"""Per-turn observability: one JSON line per model call, tool call and approval decision.

Lines go to the "tollgate.trace" logger (stdout with the app's logging) and, when a data dir is set,
to `<data_dir>/trace.jsonl`. Message content is left out unless TOLLGATE_LOG_CONTENT=1: by default
only ids, sizes, tokens, cost and times are logged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from store.usage import TokenUsage

log = logging.getLogger("tollgate.trace")


class TraceLog:
    def __init__(self, path: Path | None = None, *, content: bool | None = None,
                 sinks: list[Callable[[dict[str, Any]], None]] | None = None) -> None:
        self.path = path
        self.sinks = sinks or []  # e.g. the OpenTelemetry export (agent/otel.py)
        self.content = os.environ.get("TOLLGATE_LOG_CONTENT") == "1" if content is None else content
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, kind: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 6), "kind": kind, **fields}
        if not self.content:
            record.pop("content", None)
        for sink in self.sinks:
            try:
                sink(record)
            except Exception:  # an exporter problem must never break a turn
                log.warning("trace sink failed", exc_info=True)
        line = json.dumps(record, sort_keys=True, default=str)
        log.info(line)
        if self.path is not None:
            self._append(self.path, (line + "\n").encode())

    def close(self) -> None:
        """At shutdown: every sink that buffers (the OpenTelemetry export) sends what it holds now."""
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # a collector that is gone must not stop the rest of the shutdown
                    log.warning("trace sink failed to flush at shutdown", exc_info=True)

    def _append(self, path: Path, data: bytes) -> None:
        # One descriptor for the log's life, one O_APPEND write per event: opening and closing the file
        # per event cost ~0.6 ms of the event loop each (bench/concurrency_server.py profile).
        with self._lock:
            if self._fd is None:
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                weakref.finalize(self, os.close, self._fd)
            os.write(self._fd, data)


NULL_TRACE = TraceLog(None, content=False)


def trace_model_call(trace: TraceLog, owner: str, thread_id: str | None, turn_id: str, model: str, u: TokenUsage,
                     cost_nano: int, *, stop_reason: str | None, ttft_ms: float | None, latency_ms: float,
                     retries: int | None, error: str | None, purpose: str = "chat") -> None:
    """One model call in the trace (and OpenTelemetry): chat answers and context summaries alike."""
    trace.emit("model_call", user=owner, thread=thread_id, turn=turn_id, model=model, purpose=purpose,
               stop_reason=stop_reason, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
               cache_write_tokens=u.cache_write_5m_tokens + u.cache_write_1h_tokens,
               cache_read_tokens=u.cache_read_tokens, cost_nanousd=cost_nano,
               ttft_ms=None if ttft_ms is None else round(ttft_ms, 3), model_ms=round(latency_ms, 3),
               retries=retries, error=error)
