"""Benchmark: what an MCP tool costs over a built-in doing the same work, and what MCP servers add to start-up.

Per call: `Tool.run` (the path toolexec takes after the gate) for the same echo, as a Python @tool in-process
and as the probe server's `echo` over stdio and over Streamable HTTP on loopback (one warm session per user,
as the app keeps). Start-up: `McpServers.start()` (connect, list tools, disconnect) with 0, 1 and 5 stdio
servers, median of 3. Run: .venv/bin/python bench/mcp_latency.py [calls]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, table
from tests.mcp_servers.harness import start_http_probe, stdio_config
from tools import Tool, ToolContext, Workspace, tool
from tools.mcp import McpServers


@tool()
async def echo(ctx: ToolContext, text: str, count: int = 1) -> str:
    """Echo the text back."""
    return " ".join([text] * count)


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def timed_calls(t: Tool, ctx: ToolContext, n: int) -> list[float]:
    await t.run(ctx, {"text": "warm-up"})  # opens the user's session
    out = []
    for i in range(n):
        start = time.perf_counter()
        await t.run(ctx, {"text": f"hello {i}", "count": 2})
        out.append((time.perf_counter() - start) * 1000)
    return out


async def per_call(n: int) -> list[list[str]]:
    ctx = ToolContext(workspace=Workspace(Path(tempfile.mkdtemp())), user="bench", thread_id="t")
    rows = []
    base = await timed_calls(echo, ctx, n)
    rows.append(["built-in (@tool, in process)", f"{pct(base, 50):.3f}", f"{pct(base, 99):.3f}", "—", "—"])
    http = start_http_probe()
    try:
        for label, config in (("MCP stdio", stdio_config(read_only=("echo",))),
                              ("MCP Streamable HTTP (loopback)", http.config(read_only=("echo",)))):
            servers = McpServers([config], timeout_s=30)
            tools = {t.name: t for t in await servers.start(on_late_tools=lambda _t: None)}
            ms = await timed_calls(tools["probe__echo"], ctx, n)
            await servers.close()
            rows.append([label, f"{pct(ms, 50):.3f}", f"{pct(ms, 99):.3f}", f"+{pct(ms, 50) - pct(base, 50):.2f}",
                         f"+{pct(ms, 99) - pct(base, 99):.2f}"])
    finally:
        http.stop()
    return rows


async def start_up() -> list[list[str]]:
    rows = []
    for count in (0, 1, 5):
        runs = []
        for _ in range(3):
            servers = McpServers([stdio_config(f"s{i}") for i in range(count)], timeout_s=30)
            start = time.perf_counter()
            tools = await servers.start(on_late_tools=lambda _t: None)
            runs.append((time.perf_counter() - start) * 1000)
            await servers.close()
        rows.append([str(count), str(len(tools)), f"{statistics.median(runs):.0f}", f"{max(runs):.0f}"])
    return rows


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    print(machine())
    print(f"\nPer call, {n} calls each (ms):\n")
    print(table(["tool", "p50", "p99", "added p50", "added p99"], await per_call(n)))
    print("\nStart-up: McpServers.start() with N stdio servers (ms, median and max of 3):\n")
    print(table(["servers", "tools", "median", "max"], await start_up()))


if __name__ == "__main__":
    asyncio.run(main())
