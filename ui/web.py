"""Tollgate's own ASGI app: it owns the operator console, the request guards (security headers, origin
checks for HTTP and the chat socket, client address, revoked sessions), start-up and shutdown, and mounts
Chainlit's chat at "/" with Chainlit's documented `mount_chainlit`. Run with `tollgate serve` (or
`python -m ui.web`); `make run` does.

Why "/": the chat's URLs stay what they were (its SPA, its API and /ws/socket.io), and `mount_chainlit` with
"/" builds the same page Chainlit serves on its own (its root path "/" is stripped to ""). Our routes are
matched first, Chainlit's mount takes everything else.

Why our lifespan: Starlette runs only the outer app's lifespan, so Chainlit's (which ends the process with
`os._exit(0)` and so dropped the spans still batched for OpenTelemetry) never runs; ours starts the runtime
and on shutdown closes it, which flushes the trace export, then the process exits normally.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType

from fastapi import FastAPI

from agent.config import Settings
from ui.setup import allowed_origins, ensure_auth_secret, tune_gc_after_startup

ROOT = Path(__file__).resolve().parents[1]
CHAT_MODULE = ROOT / "app.py"  # the chat's event handlers (Chainlit decorators)
_building = False


def building() -> bool:
    """True while build_app loads the chat module: app.py refuses to load any other way (`chainlit run
    app.py` would serve the chat without the guards this module puts around it)."""
    return _building


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    from ui import chat, loop_monitor

    loop_monitor.start()  # measures event-loop stalls when TOLLGATE_LOOP_LAG_FILE is set (bench/)
    await chat.runtime()
    tune_gc_after_startup()
    try:
        yield
    finally:
        await chat.shutdown()  # the runtime: the agent, the store, the demo model, then the trace export flushed


def build_app() -> FastAPI:
    """The whole server as one ASGI app. Once per process: Chainlit's app and settings are module globals."""
    global _building
    ensure_auth_secret(Settings().data_dir)  # before chainlit checks for the secret
    from ui import chainlit_compat

    chainlit_compat.set_allowed_origins(allowed_origins())  # before chainlit builds its CORS middleware
    chainlit_compat.drop_constructor_sleep()
    chainlit_compat.resume_thread_asked_on_a_restored_session()  # a thread URL opened on a loaded machine resumes

    from chainlit.utils import mount_chainlit

    from ui import client_steps, operator, operator_page, security_headers
    from ui.doors import guard_doors

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(operator.router)  # before the mount at "/", which would take every path
    client_steps.install(app)  # its upload refusal too; steps a client writes are bounded (ui/datalayer.py)
    _building = True
    try:
        mount_chainlit(app, str(CHAT_MODULE), path="/")
    finally:
        _building = False
    guard_doors(app)
    security_headers.install(app, extra_inline_scripts=operator_page.INLINE_SCRIPTS)  # CSP on every response
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tollgate serve", description="serve the chat and the operator console")
    p.add_argument("--host", default=os.environ.get("CHAINLIT_HOST") or "127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("CHAINLIT_PORT") or 8000))
    args = p.parse_args(argv)
    # The allowed origins and the loopback checks read these (ui/setup.py), as under `chainlit run`.
    os.environ["CHAINLIT_HOST"], os.environ["CHAINLIT_PORT"] = args.host, str(args.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    app = build_app()
    # Plain asyncio as chainlit runs it; uvicorn's own log at "error" (its access log is off), ours at INFO.
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="error", loop="asyncio",
                            ws_per_message_deflate=True)
    for sig in (signal.SIGINT, signal.SIGTERM):  # see _stopped
        signal.signal(sig, _stopped)
    asyncio.run(uvicorn.Server(config).serve())
    return 0


def _stopped(_signum: int, _frame: FrameType | None) -> None:
    """Uvicorn shuts down on SIGTERM/SIGINT, then restores the handler it found and raises the signal again;
    with this one there, a clean shutdown exits 0 (as under `chainlit run`) instead of dying by the signal."""


if __name__ == "__main__":  # through the imported module: app.py asks ui.web (not __main__) whether it is building
    from ui.web import main as serve

    raise SystemExit(serve())
