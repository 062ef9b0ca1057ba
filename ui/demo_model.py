"""The offline demo model as a child process: `python -m fakeclaude` on a free loopback port.

The product never imports the fake: it starts it by module name, waits for its "listening" line (no
polling), and stops it at shutdown by closing its stdin (the child also exits if this process dies,
because the pipe closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

log = logging.getLogger("tollgate")
MODULE = "fakeclaude"
READY = "fakeclaude listening on "
START_TIMEOUT_S = 60.0  # generous: a loaded machine imports slowly
STOP_TIMEOUT_S = 5.0


class DemoModelProcess:
    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self.base_url: str | None = None

    async def start(self) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", MODULE, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self._proc = proc
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)).decode().strip()
        except TimeoutError:
            line = ""
        if not line.startswith(READY):
            await self.stop()
            raise RuntimeError(f"the demo model did not start (python -m {MODULE}): {line!r}")
        self.base_url = line.removeprefix(READY)
        return self.base_url

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("the demo model did not stop in %.0f s; killing it", STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
