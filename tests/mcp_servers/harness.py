"""Starting the probe MCP server for tests: stdio configs, and an HTTP server process on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.mcp import ServerConfig

PROBE = Path(__file__).with_name("probe.py")


def stdio_config(name: str = "probe", *, read_only: tuple[str, ...] = (), timeout_s: float | None = None
                 ) -> ServerConfig:
    return ServerConfig(name=name, command=(sys.executable, str(PROBE)), read_only=frozenset(read_only),
                        timeout_s=timeout_s)


@dataclass
class HttpProbe:
    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def config(self, name: str = "probe", *, read_only: tuple[str, ...] = (), timeout_s: float | None = None
               ) -> ServerConfig:
        return ServerConfig(name=name, url=self.url, read_only=frozenset(read_only), timeout_s=timeout_s)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_http_probe(port: int = 0) -> HttpProbe:
    """The probe over Streamable HTTP; returns once its socket accepts (it prints the port after listen())."""
    env = os.environ | {"PROBE_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, str(PROBE), "http"], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        process.kill()
        raise RuntimeError(f"the probe did not start: {line!r}")
    return HttpProbe(process=process, port=int(line))
