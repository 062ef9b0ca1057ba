"""DemoModelServer: the Messages API on loopback, run by uvicorn in a daemon thread.

Point the real SDK at it: `AsyncAnthropic(base_url=server.start(), api_key="demo")`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from types import TracebackType
from typing import Any

import uvicorn

from .accounting import PromptCache
from .app import MessagesApp
from .replies import Brain
from .settings import DemoSettings

__all__ = ["DemoModelServer", "DemoSettings"]

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class _QuietThread(logging.Filter):
    """Drops uvicorn's access lines and its "returned without completing" error (that is how a `cut`
    fault is made) for one server thread only, so other uvicorn servers in the process keep logging."""

    def __init__(self, thread_name: str, *, only: str | None = None) -> None:
        super().__init__()
        self._thread_name = thread_name
        self._only = only

    def filter(self, record: logging.LogRecord) -> bool:
        if record.threadName != self._thread_name:
            return True
        return self._only is not None and self._only not in record.getMessage()


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)
        self.ready.set()  # only now does the socket accept connections


class DemoModelServer:
    def __init__(
        self,
        brain: Brain | None = None,
        settings: DemoSettings | None = None,
        cache: PromptCache | None = None,
    ) -> None:
        if brain is None:  # the demo persona, on top of this wire-level server
            from fakeclaude.persona import DemoBrain
            brain = DemoBrain()
        self.brain: Brain = brain
        self.settings = settings if settings is not None else DemoSettings()
        self.cache = cache if cache is not None else PromptCache()
        self._app = MessagesApp(self.brain, self.settings, self.cache)
        self.base_url: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._filters: list[tuple[logging.Logger, logging.Filter]] = []
        self._failure: BaseException | None = None

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every /v1/messages body received (valid or not), in order."""
        return self._app.requests

    @property
    def count_requests(self) -> list[dict[str, Any]]:
        """Bodies sent to /v1/messages/count_tokens (kept apart so `requests` holds only turns)."""
        return self._app.count_requests

    @property
    def stream_timings(self) -> list[dict[str, Any]]:
        """Per streamed response: request_index, and time.perf_counter() values started,
        first_text_delta, last_delta, finished (None where no such delta was sent)."""
        return self._app.stream_timings

    @property
    def first_delta_times(self) -> list[float | None]:
        return [t["first_text_delta"] for t in self._app.stream_timings]

    def start(self) -> str:
        if self._server is not None and self.base_url is not None:
            return self.base_url
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app.asgi,
            log_config=None,  # never reconfigure the host app's logging
            lifespan="off",
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        server = _Server(config)
        thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"tollgate-demo-model-{port}", daemon=True
        )
        self._install_filters(thread.name)
        self._server, self._thread, self._failure = server, thread, None
        thread.start()
        if not server.ready.wait(_START_TIMEOUT_S) or not server.started:
            self.stop()
            raise RuntimeError(f"demo model server did not start: {self._failure!r}")
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    def _run(self, server: _Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # uvicorn exits via SystemExit on startup failure
            self._failure = exc
        finally:
            sock.close()
            server.ready.set()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        loop = server.loop
        if loop is not None and not loop.is_closed():
            # RuntimeError: the loop closed in between, so there is nothing left to abort.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._app.abort_streams)
        server.should_exit = True
        thread.join(_STOP_TIMEOUT_S)
        for logger, log_filter in self._filters:
            logger.removeFilter(log_filter)
        self._filters.clear()
        self._server = self._thread = None
        self.base_url = None

    def _install_filters(self, thread_name: str) -> None:
        pairs = [
            (logging.getLogger("uvicorn.access"), _QuietThread(thread_name)),
            (
                logging.getLogger("uvicorn.error"),
                _QuietThread(thread_name, only="ASGI callable returned without completing response"),
            ),
        ]
        for logger, log_filter in pairs:
            logger.addFilter(log_filter)
        self._filters = list(pairs)

    def __enter__(self) -> DemoModelServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
