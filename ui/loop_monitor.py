"""Event-loop stall probe: a task sleeps 10 ms in a loop and records how late it wakes up.

Off unless env TOLLGATE_LOOP_LAG_FILE is set; then once a second it appends a JSON line
`{"t": <unix time>, "n": <ticks>, "max_ms": ..., "p99_ms": ...}` to that file (bench/concurrency_server.py
reads it). Start it from inside the server's loop, e.g. in the app-startup handler: `loop_monitor.start()`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

TICK_S = 0.01
WINDOW_S = 1.0
_task: asyncio.Task[None] | None = None


def start(path: str | None = None) -> asyncio.Task[None] | None:
    """Start the probe on the running loop if a file is given (or in the env); idempotent."""
    global _task
    target = path or os.environ.get("TOLLGATE_LOOP_LAG_FILE", "")
    if not target or (_task is not None and not _task.done()):
        return _task
    _task = asyncio.get_running_loop().create_task(_run(Path(target)), name="tollgate-loop-monitor")
    return _task


def stop() -> None:
    global _task
    if _task is not None:
        _task.cancel()
        _task = None


async def _run(path: Path) -> None:
    lags: list[float] = []
    window = time.monotonic()
    while True:
        before = time.monotonic()
        await asyncio.sleep(TICK_S)
        now = time.monotonic()
        lags.append(max(0.0, now - before - TICK_S) * 1000)
        if now - window >= WINDOW_S:
            _write(path, lags)
            lags, window = [], now


def _write(path: Path, lags: list[float]) -> None:
    ordered = sorted(lags)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    line = {"t": round(time.time(), 3), "n": len(lags), "max_ms": round(ordered[-1], 2), "p99_ms": round(p99, 2)}
    with path.open("a") as f:  # one small append a second: cheaper than a thread hop
        f.write(json.dumps(line) + "\n")
