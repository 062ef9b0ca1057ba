"""SIGTERM of the real server: it shuts down through Tollgate's own lifespan (ui/web.py), so the spans the
OpenTelemetry export still holds reach the collector before the process exits (chainlit's lifespan ended the
process with os._exit(0) and the batch was lost)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, start_server, stop_server
from tests.e2e.test_isolation import Chat


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace collector on loopback: appends every export it receives to a file on disk."""

    def __init__(self, received: Path) -> None:
        self.received = received
        super().__init__(("127.0.0.1", 0), _Export)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Export(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/v1/traces":
            with self.server.received.open("ab") as f:
                f.write(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path / "spans.bin")
    thread = threading.Thread(target=c.serve_forever, daemon=True)
    thread.start()
    yield c
    c.shutdown()
    c.server_close()


async def model_call_turn(trace: Path, timeout: float = 60) -> str:
    """The turn id of the first model call in the trace file (written when the call ends)."""
    async with asyncio.timeout(timeout):
        while True:
            lines = trace.read_text().splitlines() if trace.exists() else []
            for line in lines:
                record = json.loads(line)
                if record["kind"] == "model_call":
                    return str(record["turn"])
            await asyncio.sleep(0.05)


async def test_sigterm_flushes_the_spans_still_batched_for_opentelemetry(tmp_path: Path, collector: Collector) -> None:
    # The batch is sent every 10 minutes: only the flush at shutdown can deliver this span within the test.
    srv = start_server(tmp_path / "data", {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                                           "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
                                           "OTEL_BSP_SCHEDULE_DELAY": "600000"})
    try:
        srv.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        alice = Chat(srv.url, "alice")
        await alice.login()
        await alice.connect()
        await alice.send("hello there")
        turn = await model_call_turn(srv.data_dir / "trace.jsonl")
        await alice.close()
        assert not collector.received.exists()  # still in the batch
        srv.proc.terminate()
        assert await asyncio.to_thread(srv.proc.wait, 60) == 0  # a clean exit, not os._exit from chainlit
    finally:
        if srv.proc.poll() is None:
            stop_server(srv)
    spans = collector.received.read_bytes()
    assert turn.encode() in spans, srv.log.read_text()[-3000:]
    assert b"chat claude-" in spans  # the model call's span, named as agent/otel.py names it
